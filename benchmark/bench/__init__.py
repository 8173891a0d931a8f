"""Speed measurement (DESIGN §10): pipeline vs. bare passes, and Quantus side by side."""

from .accounting import PassCount, PassRecorder, expected_passes, passes_per_state
from .run import format_report, run_bench

__all__ = ["PassCount", "PassRecorder", "expected_passes", "format_report", "passes_per_state", "run_bench"]
