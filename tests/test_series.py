"""RunSeries.add_records: points by series, per key layout, without series for keys that never had a number."""

from rldk_widget.series import RunSeries


def test_points_go_to_their_series_in_order_and_missing_values_open_no_series():
    series = RunSeries()
    added = series.add_records([
        {"step": 1, "run_id": "r", "loss": 0.5, "note": None},
        {"step": 2, "run_id": "r", "loss": None, "note": None},
        {"step": 3, "loss": 0.25, "kl": 1},  # another layout in the same call
        {"step": 4, "run_id": "r", "loss": 0.125, "note": None},
    ])
    assert set(series.columns) == {"loss", "kl"}  # "note" never had a number
    assert list(series.columns["loss"][0]) == [1, 3, 4] and list(series.columns["loss"][1]) == [0.5, 0.25, 0.125]
    assert {name: (list(xs), list(ys)) for name, (xs, ys) in added.points.items()} == {
        "loss": ([1, 3, 4], [0.5, 0.25, 0.125]), "kl": ([3], [1.0])}
    again = series.add_records([{"step": 5, "loss": 1.0, "kl": None}])
    assert set(again.points) == {"loss"}  # a series that gained nothing is not in the delta
    assert list(series.columns["kl"][0]) == [3]
    assert series.record_count == 5 and series.last_step == 5


def test_column_by_column_and_record_by_record_give_the_same_points():
    """Runs of records with the same keys are added by columns when every step is an int and every value a float;
    anything else in a run (a None, an int value, a text, a bad step) takes the record path: the same points."""
    def rows(count, start=0, **overrides):
        out = []
        for i in range(start, start + count):
            row = {"step": i, "run_id": "r", "loss": i / 7, "kl": -i / 3}
            row.update({key: value(i) for key, value in overrides.items()})
            out.append(row)
        return out

    batches = [rows(20), rows(20, 20, kl=lambda i: None if i % 5 == 0 else -i / 3), rows(9, 40, loss=lambda i: i),
               rows(12, 49, step=lambda i: float(i)), rows(10, 61, extra=lambda i: "text"), rows(3, 71),
               rows(10, 74, step=lambda i: -1 if i == 80 else i), rows(10, 84),
               # the same keys in another order, and as many keys but another one among them
               [dict(reversed(list(row.items()))) if i % 2 else row for i, row in enumerate(rows(10, 94))],
               [{**row, "kl2": row.pop("kl")} if i == 5 else row for i, row in enumerate(rows(10, 104))]]
    by_columns, by_records = RunSeries(), RunSeries()
    for batch in batches:
        added = by_columns.add_records(batch)
        for row in batch:
            by_records.add_records([row])
        assert added.fallback_steps == sum(1 for row in batch if row["step"] == -1)
    assert {k: (list(xs), list(ys)) for k, (xs, ys) in by_columns.columns.items()} == \
        {k: (list(xs), list(ys)) for k, (xs, ys) in by_records.columns.items()}
    assert (by_columns.record_count, by_columns.last_step) == (by_records.record_count, by_records.last_step)
