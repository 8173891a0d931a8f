"""Where the pipeline's time goes, without a profiler: named spans, timed exclusively.

The pipeline marks its parts with ``span(name)`` (model passes by kind, metrics, occlusion
bookkeeping, randomization, host transfers, writing, ...). Outside a ``Profile`` a span costs a
context-variable lookup. Inside one, the time between two span boundaries is charged to the
innermost open span (a span's time excludes the spans nested in it), so the parts add up to the
profiled time, the rest being charged to 'other'. On a GPU every boundary synchronizes the
device, which serializes the work: profile figures there are for proportions, not for speed.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any, ContextManager

import torch

OTHER = "other"
_ACTIVE: ContextVar["Profile | None"] = ContextVar("profile", default=None)
_NOTHING = nullcontext()


class Profile:
    """``with Profile(device) as profile: ...`` then ``profile.parts()``: seconds by span name."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.cuda = device is not None and device.type == "cuda"
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self.stack: list[str] = []
        self.total = 0.0

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _charge(self) -> None:
        now = self._now()
        self.seconds[self.stack[-1] if self.stack else OTHER] += now - self.mark
        self.mark = now

    def __enter__(self) -> "Profile":
        self.token = _ACTIVE.set(self)
        self.started = self.mark = self._now()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._charge()
        self.total += self.mark - self.started
        _ACTIVE.reset(self.token)

    def enter(self, name: str) -> None:
        self._charge()
        self.stack.append(name)
        self.calls[name] += 1

    def leave(self) -> None:
        self._charge()
        self.stack.pop()

    def parts(self) -> dict[str, float]:
        """Seconds per part, largest first, 'other' last; they sum to ``total``."""
        named = sorted(((k, v) for k, v in self.seconds.items() if k != OTHER), key=lambda kv: -kv[1])
        return {**dict(named), OTHER: self.seconds.get(OTHER, 0.0)}


class _Span:
    __slots__ = ("profile", "name")

    def __init__(self, profile: Profile, name: str) -> None:
        self.profile, self.name = profile, name

    def __enter__(self) -> None:
        self.profile.enter(self.name)

    def __exit__(self, *exc: Any) -> None:
        self.profile.leave()


def span(name: str) -> ContextManager:
    """Charge the time inside to ``name`` while a ``Profile`` is active (nothing otherwise)."""
    profile = _ACTIVE.get()
    return _NOTHING if profile is None else _Span(profile, name)


def profiling() -> bool:
    return _ACTIVE.get() is not None
