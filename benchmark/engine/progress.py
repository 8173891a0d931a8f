"""The run's progress: work done as images × model states, from wherever the shards run (DESIGN §2).

Workers report every model state of every batch they finish (the trained model, then each
seed × stage: ``ShardRunner``), so the count moves within a shard. Each report also carries
its share of an image's work (``StateWork``: the trained state draws the occlusion curves too
and is worth several randomized states), so the rate, in images per second, is the work of all
workers together and the ETA does not jump when a cheap or a costly phase comes. A shard's end
settles its count (images that failed to load included); a failed try takes its reports back.

On a terminal the numbers are a tqdm bar, and whatever else writes to stdout/stderr meanwhile
(Ray's start-up lines, actor output forwarded by Ray) is printed above the bar instead of
through it (``capturing``). Elsewhere (a submitted job, a CI log) the same numbers are printed
as one plain line every ``every`` seconds, and once at the end.
"""

from __future__ import annotations

import bisect
import io
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, TextIO

from tqdm import tqdm

DEFAULT_EVERY = 30.0  # seconds between plain progress lines


@dataclass(frozen=True)
class StateWork:
    """How one image's work splits over its ``states`` model states: the first (trained) state
    is ``trained`` of it, each later one ``each``; together they make one image."""

    states: int
    trained: float
    each: float

    @classmethod
    def of(cls, states: int, trained_cost: float, randomized_cost: float) -> "StateWork":
        """From the cost of the trained state and of one randomized state (any common unit)."""
        states = max(1, states)
        if states == 1:
            return cls(1, 1.0, 0.0)
        total = trained_cost + (states - 1) * randomized_cost
        return cls(states, trained_cost / total, randomized_cost / total)

    def share(self, first: bool) -> float:
        return self.trained if first else self.each


class ProgressSink(Protocol):
    """Where a worker reports ``units`` more image-states done (a model state of a batch, or part
    of one), worth ``images`` images of work."""

    def report(self, shard: int, attempt: int, units: float, images: float) -> None: ...


class Throughput:
    """Images of work per second over the trailing ``max(min_window, fraction × elapsed)`` seconds
    of reports, elapsed counted from the first sample (``Progress.work_started``: the first worker
    ready, so start-up is left out): a long run averages over a long stretch, and the rate follows
    real changes (actors finishing, a slower phase). No rate before ``min_span`` seconds of work."""

    def __init__(self, min_window: float = 60.0, fraction: float = 0.5, min_span: float = 10.0) -> None:
        self.min_window, self.fraction, self.min_span = min_window, fraction, min_span
        self.times: list[float] = []
        self.totals: list[float] = []
        self.total = 0.0

    def add(self, amount: float, now: float) -> None:
        self.total += amount
        if self.times and now <= self.times[-1]:
            self.totals[-1] = self.total
            return
        self.times.append(now)
        self.totals.append(self.total)

    def rate(self) -> float | None:
        if len(self.times) < 2:
            return None
        last = self.times[-1]
        window = max(self.min_window, self.fraction * (last - self.times[0]))
        start = max(0, bisect.bisect_right(self.times, last - window) - 1)
        seconds = last - self.times[start]
        if seconds < self.min_span:
            return None
        return max(0.0, (self.totals[-1] - self.totals[start]) / seconds)


@dataclass
class _Try:
    attempt: int
    units: float = 0.0
    images: float = 0.0


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def format_rate(rate: float | None) -> str:
    if not rate:
        return "? img/s"
    return f"{rate:.3g} img/s" if rate >= 1 else f"{1 / rate:.3g} s/img"


class Progress:
    """Images × states done of this run's pending shards, shards done and failed, rate and ETA."""

    def __init__(
        self,
        total_images: int,
        total_shards: int,
        done_shards: int = 0,
        enabled: bool = True,
        *,
        states: int = 1,
        every: float = DEFAULT_EVERY,
        stream: TextIO | None = None,
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_images, self.states = total_images, max(1, states)
        self.total_units = total_images * self.states
        self.total_shards, self.done, self.failures = total_shards, done_shards, 0
        self.units, self.images = 0.0, 0.0
        self.tries: dict[int, _Try] = {}  # shards running now: their try and what it reported
        self.settled: set[int] = set()
        self.throughput = Throughput()
        self.clock, self.started = clock, clock()
        self.stream = stream or sys.stderr
        self.enabled, self.every = enabled, every
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.lock = threading.RLock()
        self.bar = None
        if enabled and interactive:
            width = _fixed_width(self.stream)
            self.bar = tqdm(
                total=self.total_units, file=self.stream, dynamic_ncols=width is None, ncols=width, desc="run",
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} image-states [{elapsed}{postfix}]",
            )
            self._show()
        self._stop = threading.Event()
        self._ticker = None
        if enabled:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    # -- what workers and executors tell it -----------------------------------------------------
    def report(self, shard: int, attempt: int, units: float, images: float) -> None:
        """A worker finished ``units`` more image-states (``ProgressSink``)."""
        with self.lock:
            current = self.tries.get(shard)
            if shard in self.settled or (current is not None and attempt < current.attempt):
                return  # late news of a shard already settled, or of an abandoned try
            if current is None or attempt > current.attempt:
                if current is not None:
                    self._add(-current.units, -current.images)
                current = self.tries[shard] = _Try(attempt)
            current.units += units
            current.images += images
            self._add(units, images)

    def work_started(self) -> None:
        """The first worker is ready (its model loaded): the rate counts from here, so the work
        done before the first report counts too, and start-up (Ray, model loading) does not."""
        with self.lock:
            if not self.throughput.times:
                self.throughput.add(0.0, self.clock())

    def shard_done(self, summary: dict) -> None:
        with self.lock:
            self.done += 1
            self._settle(summary["shard"], summary["images"] + summary.get("errors", 0))

    def shard_retry(self, shard: int) -> None:
        """A try failed and the shard runs again: what the failed try reported is taken back."""
        with self.lock:
            current = self.tries.pop(shard, None)
            if current is not None:
                self._add(-current.units, -current.images)
                self.tries[shard] = _Try(current.attempt + 1)
            self._show()

    def shard_failed(self, shard: int, images: int) -> None:
        """The shard is given up (recorded in ``errors``): its work counts as done."""
        with self.lock:
            self.failures += 1
            self._settle(shard, images)

    def note(self, message: str) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.write(message, file=self.stream)
            else:
                print(message, file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        with self.lock:
            if self.bar is not None:
                self._show()
                self.bar.close()
                self.bar = None
            elif self.enabled:
                print(self.line(), file=self.stream, flush=True)

    # -- numbers ------------------------------------------------------------------------------
    def rate(self) -> float | None:
        """Images of work per second, all workers together."""
        return self.throughput.rate()

    def eta(self) -> float | None:
        rate = self.rate()
        if not rate:
            return None
        return max(0.0, self.total_images - self.images) / rate

    def line(self) -> str:
        """The plain progress line (no terminal)."""
        percent = 100.0 * self.units / self.total_units if self.total_units else 100.0
        return (
            f"progress {percent:5.1f}% | {self.units:.0f}/{self.total_units} image-states | "
            f"{self.images:.1f}/{self.total_images} images | {format_rate(self.rate())} | "
            f"ETA {format_seconds(self.eta())} | elapsed {format_seconds(self.clock() - self.started)} | "
            f"shards {self.done}/{self.total_shards}, {self.failures} failed"
        )

    # -- internals ----------------------------------------------------------------------------
    def _settle(self, shard: int, images: int) -> None:
        current = self.tries.pop(shard, None) or _Try(0)
        if shard not in self.settled:
            self.settled.add(shard)
            self._add(images * self.states - current.units, images - current.images)
        self._show()

    def _add(self, units: float, images: float) -> None:
        self.units += units
        self.images += images
        self.throughput.add(images, self.clock())
        self._show()

    def _show(self) -> None:
        if self.bar is None:
            return
        self.bar.n = self.units
        self.bar.set_postfix_str(
            f"{self.images:.1f}/{self.total_images} img, {format_rate(self.rate())}, "
            f"ETA {format_seconds(self.eta())}, shards {self.done}/{self.total_shards}, {self.failures} failed",
            refresh=False,
        )
        self.bar.refresh()

    def _tick(self) -> None:
        last_line = self.clock()
        while not self._stop.wait(1.0):
            with self.lock:
                if self.bar is not None:
                    self._show()
                elif self.clock() - last_line >= self.every:
                    print(self.line(), file=self.stream, flush=True)
                    last_line = self.clock()

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """While the bar is shown, lines written to stdout/stderr go above it (not through it)."""
        if self.bar is None:
            yield
            return
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _AboveBar(self), _AboveBar(self)
        try:
            yield
        finally:
            for proxy in (sys.stdout, sys.stderr):
                if isinstance(proxy, _AboveBar):
                    proxy.flush()
            sys.stdout, sys.stderr = saved


def _fixed_width(stream: TextIO) -> int | None:
    """None when the terminal reports its width (the bar follows it); else a fixed width. A
    terminal without a size (0 columns: a pty of `script`, some CI runners) would make tqdm draw
    an empty bar."""
    try:
        if os.get_terminal_size(stream.fileno()).columns > 0:
            return None
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 120


class _AboveBar(io.TextIOBase):
    """A text stream whose complete lines are printed above the progress bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.pending = progress, ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.progress.note(line)
        return len(text)

    def flush(self) -> None:
        if self.pending:
            line, self.pending = self.pending, ""
            self.progress.note(line)
