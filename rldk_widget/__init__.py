"""rldk_widget: a live Jupyter dashboard for TRL / transformers RL fine-tuning runs.

`RLDKCallback` and `AlertRules` are imported on first use, so `import rldk_widget` does not import
transformers or torch.
"""

from __future__ import annotations

from typing import Any

from .dashboard import RLDKDashboard
from .metrics import RLDKMetrics

__all__ = ["RLDKDashboard", "RLDKMetrics", "RLDKCallback", "AlertRules", "SampleSettings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "RLDKCallback":
        from .callback import RLDKCallback

        return RLDKCallback
    if name == "AlertRules":
        from .alerts import AlertRules

        return AlertRules
    if name == "SampleSettings":
        from .samples import SampleSettings

        return SampleSettings
    raise AttributeError(f"module 'rldk_widget' has no attribute {name!r}")
