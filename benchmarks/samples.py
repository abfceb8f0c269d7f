"""Issue 15: the completions index, Python side. A synthetic run of 10k logged steps × 64 samples of ~2 KB each
(8 prompts × 8 completions per step, two reward functions), written as RLDKCallback writes it (`batch_records` +
one `RunStore.append` per step, in a child process); then in this process: building a `SampleIndex` over it (time and
kernel memory), a step's page, the first page of a search (newest steps first) for a common, a rare and an absent
word and the whole search of the absent one, one prompt across steps, and one step as a DataFrame.

    .venv/bin/python benchmarks/samples.py [--quick]
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c  # noqa: E402

NAME = "samples"
RUN = "bench_samples"

FULL = dict(steps=10_000, per_step=64, group=8, text_bytes=2048, page_reps=300, search_reps=5, history_reps=50)
QUICK = dict(steps=200, per_step=64, group=8, text_bytes=2048, page_reps=20, search_reps=2, history_reps=5)

TARGET_INDEX_MB = 200  # kernel memory for the index of the full run (RSS growth, numbers only; texts stay on disk)
TARGET_PAGE_S = 0.005  # a step's page (64 samples grouped by prompt, texts read from the file), median
TARGET_FIRST_SEARCH_S = 1.0  # the first page of a search, worst of the three words
RARE_EVERY = 97  # the rare word is in one completion of every 97th step
WORDS = ("the a cat dog bird sat ran flew on under over mat tree sky red blue green big small one two three four "
         "five count add say yes no good bad answer question is what how many").split()


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_run(folder: str, cfg: dict) -> None:
    """The synthetic run's samples file, step by step through the callback's path (runs in a child process)."""
    from rldk_widget.samples import RawBatch, SampleSettings, batch_records
    from rldk_widget.store import RunStore

    rng = random.Random(0)
    pool = [" ".join(rng.choice(WORDS) for _ in range(cfg["text_bytes"] // 4))[: cfg["text_bytes"] - 40]
            for _ in range(512)]
    settings = SampleSettings(per_step=cfg["per_step"])
    store = RunStore(folder, RUN)
    groups = cfg["per_step"] // cfg["group"]
    spent = 0.0
    for step in range(1, cfg["steps"] + 1):
        prompts, completions = [], []
        for g in range(groups):
            prompt = f"Question {step}-{g}: {pool[(step * 7 + g) % 512][:300]}"
            for k in range(cfg["group"]):
                text = f"answer {step}.{g}.{k} {pool[rng.randrange(512)]}"
                if step % RARE_EVERY == 0 and g == 0 and k == 0:
                    text = text[:1000] + " zebra " + text[1000:]
                prompts.append(prompt)
                completions.append(text)
        n = len(prompts)
        rewards = {"reward_len": [rng.random() for _ in range(n)], "reward_words": [rng.random() for _ in range(n)]}
        advantages = [rng.gauss(0, 1) for _ in range(n)]
        batch = RawBatch(step, prompts, completions, rewards, advantages, max_completion_length=1024,
                         clipped_ratio=0.0)
        t = time.perf_counter()
        store.append("samples", batch_records(batch, settings, RUN, time.time()))
        spent += time.perf_counter() - t
    store.close()
    Path(folder, "write_time").write_text(repr(spent))


def time_token_counting(tmp: Path, cfg: dict) -> float:
    """The write pass's extra cost when completion lengths must be counted (TRL's log gives neither all-equal
    lengths nor a clipped ratio of 1): re-tokenizing a 64-sample batch of ~2 KB completions with the byte-level BPE
    tokenizer of rldk_widget.demo_models (vocabulary 384: many tokens per character, a pessimistic case)."""
    from rldk_widget.demo_models import build_tokenizer
    from rldk_widget.samples import RawBatch, SampleSettings, batch_records

    backend = build_tokenizer().backend_tokenizer
    rng = random.Random(2)
    texts = [" ".join(rng.choice(WORDS) for _ in range(cfg["text_bytes"] // 4))[: cfg["text_bytes"]]
             for _ in range(cfg["per_step"])]
    batch = RawBatch(1, ["prompt"] * len(texts), texts, {"r": [0.0] * len(texts)}, [0.0] * len(texts),
                     max_completion_length=1024, clipped_ratio=0.5)

    def count(values):
        return [len(e.ids) for e in backend.encode_batch_fast(values, add_special_tokens=False)]

    spent = []
    for _ in range(5):
        t = c.now()
        batch_records(batch, SampleSettings(), RUN, 0.0, count)
        spent.append(c.now() - t)
    return min(spent)


def main(argv: list[str] | None = None) -> dict:
    args, cfg, started = c.start(__doc__, argv, FULL, QUICK)
    import numpy as np

    from rldk_widget.sample_index import SampleIndex

    print(f"{NAME}: {'QUICK smoke run' if args.quick else 'full run'}; {cfg['steps']:,} steps × {cfg['per_step']} "
          f"samples of ~{cfg['text_bytes']:,} B; {c.load_note()}", flush=True)
    data: dict = {"config": cfg}
    with c.temp_dir(NAME) as tmp:
        child = multiprocessing.get_context("fork").Process(target=write_run, args=(str(tmp), cfg))
        t = c.now()
        child.start()
        child.join()
        assert child.exitcode == 0, "writing the synthetic run failed"
        path = tmp / f"{RUN}_samples.json"
        data["file_bytes"] = path.stat().st_size
        data["write_s"] = c.now() - t
        data["write_batch_s"] = float((tmp / "write_time").read_text()) / cfg["steps"]
        print(f"  samples file written: {c.fmt_bytes(data['file_bytes'])} in {data['write_s']:.1f} s "
              f"({c.fmt_time(data['write_batch_s'])} per 64-sample batch: records + one append)", flush=True)
        with open(path, "rb") as f:  # into the page cache, as a file just written by training is
            while f.read(4 << 20):
                pass

        gc.collect()
        before = rss_mb()
        t = c.now()
        index = SampleIndex(RUN, path)
        update = index.update_all()
        data["build_s"] = c.now() - t
        gc.collect()
        data["index_rss_mb"] = rss_mb() - before
        data["index_bytes"] = index.memory_bytes()
        data["peak_rss_mb"] = c.peak_rss_mb()
        samples = len(index)
        assert samples == cfg["steps"] * cfg["per_step"], f"indexed {samples} samples"
        assert not update.problems, update.problems
        print(f"  index built in {data['build_s']:.2f} s, RSS +{data['index_rss_mb']:.0f} MiB "
              f"({c.fmt_bytes(data['index_bytes'])} held)", flush=True)

        rng = random.Random(1)
        steps = index.steps()
        pages = {"default": [], "sorted": [], "flat": []}
        for _ in range(cfg["page_reps"]):
            step = rng.choice(steps)
            for variant, kwargs in (("default", {}),
                                    ("sorted", {"sort": "reward", "descending": True, "reward_range": (0.2, None)}),
                                    ("flat", {"group": False, "sort": "advantage"})):
                t = c.now()
                page = index.page(step, **kwargs)
                pages[variant].append(c.now() - t)
                if variant == "default":
                    assert sum(len(g["rows"]) for g in page["groups"]) == cfg["per_step"]
        data["page_s"] = {k: c.summary(v) for k, v in pages.items()}

        searches = {}
        for word in ("answer", "zebra", "quokka"):
            first, pages_needed, whole = [], 0, []
            for rep in range(cfg["search_reps"]):
                gc.collect()
                t = c.now()
                result = index.search(word)
                first.append(c.now() - t)
                if rep == 0:
                    searches[word] = {"first_matches": len(result["matches"]),
                                      "first_searched_steps": result["searched_steps"],
                                      "total_steps": result["total_steps"],
                                      "first_newest_step": result["matches"][0]["step"] if result["matches"] else None}
                if word != "answer" and rep < 2:
                    t = c.now()
                    pages_needed = 1
                    found = len(result["matches"])
                    while result["cursor"] is not None:
                        result = index.search(word, result["cursor"])
                        pages_needed += 1
                        found += len(result["matches"])
                    whole.append(first[-1] + c.now() - t)
                    searches[word]["all_matches"] = found
                    searches[word]["pages"] = pages_needed
            searches[word]["first_s"] = c.summary(first)
            if whole:
                searches[word]["whole_s"] = c.summary(whole)
        assert searches["zebra"]["all_matches"] == cfg["steps"] // RARE_EVERY
        assert searches["quokka"]["all_matches"] == 0
        assert searches["answer"]["first_newest_step"] == steps[-1]
        data["search"] = searches

        history = []
        for _ in range(cfg["history_reps"]):
            page = index.page(rng.choice(steps))
            prompt_id = page["groups"][0]["prompt_id"]
            t = c.now()
            index.prompt_history(prompt_id)
            history.append(c.now() - t)
        data["history_s"] = c.summary(history)
        t = c.now()
        frame = index.dataframe(step=steps[-1])
        data["dataframe_step_s"] = c.now() - t
        assert len(frame) == cfg["per_step"]
        data["tokens_batch_s"] = time_token_counting(tmp, cfg)
        del np

    table = c.Table(
        f"SampleIndex over a synthetic run: {cfg['steps']:,} steps × {cfg['per_step']} samples of ~{cfg['text_bytes']:,}"
        f" B ({c.fmt_bytes(data['file_bytes'])} samples file, in the page cache)",
        ["measure", "median", "p90 / max", "note"],
    )
    table.add("index build (update_all)", c.fmt_time(data["build_s"]), "-",
              f"{cfg['steps'] * cfg['per_step']:,} samples, reading the whole file")
    table.add("kernel memory for the index (RSS growth)", f"{data['index_rss_mb']:.0f} MiB",
              f"process peak {data['peak_rss_mb']:.0f} MiB",
              f"{c.fmt_bytes(data['index_bytes'])} in numpy columns and step tables; texts stay on disk")
    for variant, label in (("default", "step page: 64 samples grouped by prompt"),
                           ("sorted", "step page: sorted by reward, reward ≥ 0.2"),
                           ("flat", "step page: rows sorted by advantage, ungrouped")):
        s = data["page_s"][variant]
        table.add(label, c.fmt_time(s["median"]), f"{c.fmt_time(s['p90'])} / {c.fmt_time(s['max'])}",
                  f"{s['n']} random steps, texts of ≤ 2,000 characters read from the file")
    for word, label in (("answer", "in every sample"), ("zebra", f"1 sample per {RARE_EVERY} steps"),
                        ("quokka", "absent")):
        s = data["search"][word]
        note = (f"first page: {s['first_matches']} matches, {s['first_searched_steps']:,} of {s['total_steps']:,} "
                "steps searched")
        if "whole_s" in s:
            note += f"; all {s['pages']} pages: {s['all_matches']} matches in {c.fmt_time(s['whole_s']['median'])}"
        table.add(f"search {word!r} ({label}): first page", c.fmt_time(s["first_s"]["median"]),
                  f"{c.fmt_time(s['first_s']['p90'])} / {c.fmt_time(s['first_s']['max'])}", note)
    table.add("one prompt across steps", c.fmt_time(data["history_s"]["median"]),
              f"{c.fmt_time(data['history_s']['p90'])} / {c.fmt_time(data['history_s']['max'])}",
              "scan of the prompt-key column + that step's texts")
    table.add("one step as a DataFrame", c.fmt_time(data["dataframe_step_s"]), "-", "completions(step=s)")
    table.note(f"Writing (in a child process, as RLDKCallback's write pass does): "
               f"{c.fmt_time(data['write_batch_s'])} per 64-sample batch of ~2 KB texts (rendering, content keys, "
               "caps, JSON, one locked append); the training thread's part at on_log is a snapshot of references. "
               f"When lengths must be counted (the log's min and max length differ and its clipped ratio is "
               f"neither 0 nor 1) the pass re-tokenizes the batch: {c.fmt_time(data['tokens_batch_s'])} with the "
               "tiny byte-level tokenizer of demo_models (a pessimistic case), once per generation batch.")
    table.note("A search page ends at a step boundary after `limit` (50) matches or 0.25 s of searching (at least one "
               "step); its cursor continues with the older steps.")
    first_worst = max(data["search"][w]["first_s"]["max"] for w in data["search"])
    checks = c.Checks()
    checks.add("kernel memory for the index (RSS growth)", data["index_rss_mb"], TARGET_INDEX_MB, "MiB")
    checks.add("a step's page, median", data["page_s"]["default"]["median"], TARGET_PAGE_S, "s")
    checks.add("first page of a search (worst word, max)", first_worst, TARGET_FIRST_SEARCH_S, "s")
    c.write_results(NAME, args, [table], checks, data, started)
    return data


if __name__ == "__main__":
    main()
