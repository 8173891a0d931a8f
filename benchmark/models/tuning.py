"""Execution settings chosen by measurement: chunk size, memory layout, threads, forward reuse, precision,
BatchNorm folding for the forward-only passes.

None of these settings changes what is computed, only how: the numbers they give differ in the last
bits (float reduction order), never more. Their best values depend on the model, the input size, the
device and the job's mix of passes (ResNet-34 at 64 px on a 2-core CPU is ~2x faster with 32 inputs
per pass in the default layout than with 8 in channels-last, the best choice at 224 px), so a run does
not take them from constants: a short probe times the job's own kinds of passes on its own model and
device, and a cost model (passes per image of each kind x measured seconds per input at the call size
each chunk size gives) picks the settings. The search below is pure: it takes the measuring function
and a clock, so its decisions are tested with fake timings.

The settings are decided once per run (the driver, ``engine.tuning``), recorded in the manifest and
reused by every worker and on every resume, so that a run stays bitwise repeatable; a value given
explicitly in ``runtime`` is never probed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable

TUNED_KEYS = ("chunk_size", "channels_last", "threads", "reuse_bottom_forward", "precision", "fold_batchnorm")
# Settings added after runs were recorded: what a manifest without them did (a resume stays bitwise equal).
ADDED_LATER = {"fold_batchnorm": False}
CHUNK_CANDIDATES = (8, 16, 32, 64)  # CPU; on a GPU the ladder goes on up to what memory allows
CPU_FALLBACK_CHUNK = 8  # what 'auto' means where nothing was measured (a worker built without a run)


@dataclass(frozen=True)
class ExecutionSettings:
    """The resolved execution settings of a run: one value each, the same for every worker."""

    chunk_size: int
    channels_last: bool
    threads: int
    reuse_bottom_forward: bool
    precision: str  # 'tf32' | 'fp32' (matters on CUDA only)
    fold_batchnorm: bool = False  # forward-only passes through a copy with BatchNorms folded (``models.folding``)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExecutionSettings":
        values = {**ADDED_LATER, **values}
        missing = [key for key in TUNED_KEYS if key not in values]
        if missing:
            raise ValueError(f"execution settings lack {', '.join(missing)}")
        return cls(
            chunk_size=int(values["chunk_size"]),
            channels_last=bool(values["channels_last"]),
            threads=int(values["threads"]),
            reuse_bottom_forward=bool(values["reuse_bottom_forward"]),
            precision=str(values["precision"]),
            fold_batchnorm=bool(values["fold_batchnorm"]),
        )

    def describe(self) -> str:
        return (
            f"chunk {self.chunk_size}, {'channels-last' if self.channels_last else 'contiguous'} layout, "
            f"{self.threads} thread{'s' if self.threads != 1 else ''}, forward reuse "
            f"{'on' if self.reuse_bottom_forward else 'off'}, "
            f"{'BatchNorms folded in forward-only passes, ' if self.fold_batchnorm else ''}{self.precision}"
        )


@dataclass(frozen=True)
class PassKind:
    """One kind of model pass of a job and how much of it the job makes.

    ``name``: 'plain' (forward + input gradient), 'forward' (no gradient), or the id of the method
    whose backward rules are on the model (guided backprop, LRP). ``per_image``: passes of this kind
    per image. A call packs ``images`` images x up to ``steps`` steps per image into one chunk
    (``attribution.backward.tiles``); ``images=1`` with ``steps=n`` is a flat stream of n inputs;
    ``chunked=False``: the whole batch in one call whatever the chunk (a state's logits).
    """

    name: str
    backward: bool
    per_image: float
    images: int
    steps: int = 1
    chunked: bool = True

    def call_size(self, chunk: int) -> int:
        """Inputs per call of this kind with this chunk size."""
        if not self.chunked:
            return self.images
        if chunk >= self.images:
            return self.images * min(self.steps, chunk // self.images)
        return chunk


@dataclass(frozen=True)
class Point:
    """One measurement: seconds per input of a pass kind at a call size under some settings."""

    kind: str
    size: int
    channels_last: bool
    threads: int = 1
    precision: str = "fp32"
    replay: bool = False  # the plain pass recomputing only the randomized top (``attribution.reuse``)
    record: bool = False  # the plain pass recording its graph for later replays
    fold: bool = False  # a forward pass through the copy with BatchNorms folded (``models.folding``)


@dataclass
class TuningResult:
    settings: ExecutionSettings
    predicted: dict[str, float]  # 'chunk/layout' -> predicted seconds per image (the cost model)
    measurements: list[tuple[Point, float]]
    seconds: float  # how long the probe took
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What the manifest keeps of the probe."""
        return {
            "seconds": round(self.seconds, 3),
            "predicted_seconds_per_image": {key: round(value, 6) for key, value in self.predicted.items()},
            "measurements": [
                {**{k: v for k, v in asdict(point).items()}, "seconds_per_input": round(value, 6)}
                for point, value in self.measurements
            ],
            "notes": list(self.notes),
        }


Measure = Callable[[Point], float]
Clock = Callable[[], float]


def layout_name(channels_last: bool) -> str:
    return "channels_last" if channels_last else "contiguous"


class Tuner:
    """Picks the open settings of a job from measured pass times, within a time budget.

    ``fixed``: the settings given explicitly (never probed); ``open_keys``: those to choose.
    The chunk ladder is walked upward per layout and stops where the predicted time per image stops
    falling (a pass gets slower per input once its working set leaves the caches); measurements that
    would not fit the remaining budget are skipped and the nearest measured size stands in for them.
    A close call between the layouts is timed again, paired (``_confirm_layout``), before it is made.
    Ties go to the smaller chunk, the fewer threads and the default layout (channels-last).
    """

    IMPROVEMENT = 0.03  # another thread / reuse off / tf32 must beat the simpler choice by this much
    CLOSE_CALL = 0.10  # layouts predicted within this of each other are re-timed before one is chosen

    def __init__(
        self,
        workload: list[PassKind],
        measure: Measure,
        *,
        fixed: ExecutionSettings,
        open_keys: Iterable[str],
        chunks: tuple[int, ...] = CHUNK_CANDIDATES,
        max_threads: int = 1,
        cuda: bool = False,
        replayable: bool = False,
        foldable: bool = False,
        budget: float = 10.0,
        clock: Clock,
    ) -> None:
        self.workload = [kind for kind in workload if kind.per_image > 0]
        self.measure_fn, self.fixed, self.open = measure, fixed, set(open_keys)
        self.chunks = tuple(sorted(set(chunks))) if "chunk_size" in self.open else (fixed.chunk_size,)
        self.layouts = (True, False) if "channels_last" in self.open else (fixed.channels_last,)
        self.max_threads, self.cuda, self.replayable, self.foldable = max(1, max_threads), cuda, replayable, foldable
        self.budget, self.clock = budget, clock
        self.times: dict[Point, float] = {}
        self.notes: list[str] = []

    # -- measuring within the budget -------------------------------------------------------------------
    def _point(self, kind: str, size: int, channels_last: bool, **changes: Any) -> Point:
        base = Point(kind, size, channels_last, self.fixed.threads, self.fixed.precision)
        return replace(base, **changes) if changes else base

    def _affordable(self, point: Point) -> bool:
        """Whether measuring ``point`` fits the remaining budget, judged from a smaller measured size.
        The first measurement of a kind in each layout, thread count, precision and replay is always
        made: a budget spent on the chunk ladder (a slow machine, a heavy model, a job of many methods)
        must not leave a layout, the threads or TF32 out of the comparison (on an H200 the ten methods
        of the paper's job spent it before TF32 was ever timed, so strict fp32 was kept unmeasured)."""
        known = [v for p, v in self.times.items() if p.kind == point.kind and p.replay == point.replay
                 and p.record == point.record]
        if not any(p.kind == point.kind and p.channels_last == point.channels_last and p.replay == point.replay
                   and p.record == point.record and p.threads == point.threads and p.precision == point.precision
                   and p.fold == point.fold for p in self.times):
            return True
        cost = 2 * point.size * min(known)  # about a warm-up and a timed call
        return self.clock() - self.started + cost <= self.budget

    def time(self, point: Point) -> float | None:
        """Measured seconds per input, or None where the budget does not allow the measurement."""
        if point in self.times:
            return self.times[point]
        if not self._affordable(point):
            return None
        self.times[point] = value = float(self.measure_fn(point))
        return value

    def _per_input(self, kind: PassKind, size: int, channels_last: bool) -> float | None:
        value = self.time(self._point(kind.name, size, channels_last))
        if value is not None:
            return value
        # not affordable: the nearest size measured for this kind stands in, the largest smaller one first
        # (two kinds of one name at different call sizes, e.g. the occlusion stream at the chunk and the
        # logits forward at the batch, must not drop a layout from the comparison when the budget is spent)
        measured = [(p.size, v) for p, v in self.times.items() if p.kind == kind.name and p.channels_last == channels_last
                    and not p.replay and not p.record and not p.fold
                    and p.threads == self.fixed.threads and p.precision == self.fixed.precision]
        if not measured:
            return None
        nearest = min(measured, key=lambda item: (item[0] > size, abs(item[0] - size)))
        return nearest[1]

    # -- the cost model ----------------------------------------------------------------------------------
    def predict(self, chunk: int, channels_last: bool) -> float | None:
        """Predicted seconds per image: Σ over kinds of passes per image x seconds per input at its call size."""
        total = 0.0
        for kind in sorted(self.workload, key=lambda k: -k.per_image):
            value = self._per_input(kind, kind.call_size(chunk), channels_last)
            if value is None:
                return None
            total += kind.per_image * value
        return total

    # -- the search ---------------------------------------------------------------------------------------
    def run(self) -> TuningResult:
        self.started = self.clock()
        predicted: dict[str, float] = {}
        if self.workload and ({"chunk_size", "channels_last"} & self.open):
            previous = {layout: math.inf for layout in self.layouts}
            for chunk in self.chunks:  # layouts interleaved, so a tight budget does not starve one of them
                for channels_last in [layout for layout in self.layouts if layout in previous]:
                    cost = self.predict(chunk, channels_last)
                    if cost is None:
                        del previous[channels_last]
                        continue
                    predicted[f"{chunk}/{layout_name(channels_last)}"] = cost
                    if cost > previous[channels_last]:
                        del previous[channels_last]  # slower than the smaller chunk: larger ones will not help
                    else:
                        previous[channels_last] = cost
            predicted = self._confirm_layout(predicted)
        best = self._best(predicted)
        chunk, channels_last = best if best else (self.fixed.chunk_size, self.fixed.channels_last)
        settings = replace(self.fixed, chunk_size=chunk, channels_last=channels_last)
        settings = self._threads(settings)
        settings = self._reuse(settings)
        settings = self._precision(settings)
        settings = self._fold(settings)
        return TuningResult(settings, predicted, list(self.times.items()), self.clock() - self.started, self.notes)

    def _best(self, predicted: dict[str, float], channels_last: bool | None = None) -> tuple[int, bool] | None:
        """The chunk and layout of the lowest prediction (of one layout, if given); ties to the smaller
        chunk, then to the first layout of the ladder (channels-last)."""
        best: tuple[float, int, bool] | None = None
        layouts = self.layouts if channels_last is None else (channels_last,)
        for chunk in self.chunks:
            for layout in layouts:
                cost = predicted.get(f"{chunk}/{layout_name(layout)}")
                if cost is None:
                    continue
                if best is None or cost < best[0] * (1 - 1e-9):
                    best = (cost, chunk, layout)
        return (best[1], best[2]) if best else None

    def _confirm_layout(self, predicted: dict[str, float]) -> dict[str, float]:
        """Re-time a close call between the layouts before making it, and return the new predictions.

        One timing of a pass is sometimes far too slow (another process, the allocator, a first call:
        a 45 % outlier on one of ten LRP timings of ResNet-34 at 64 px), never too fast; where the two
        layouts' best predictions are within ``CLOSE_CALL``, one such outlier decides the layout. So each
        kind is timed again at both layouts' best chunks, the two timings back to back (paired: drift
        hits both), and every point keeps its fastest timing. This is outside the budget: it costs about
        one more timing of each kind in each layout, and a wrong layout costs up to ``CLOSE_CALL`` of
        every image of the run."""
        finalists = [self._best(predicted, layout) for layout in self.layouts]
        if len(finalists) != 2 or None in finalists:
            return predicted
        costs = [predicted[f"{chunk}/{layout_name(layout)}"] for chunk, layout in finalists]
        if max(costs) > min(costs) * (1 + self.CLOSE_CALL):
            return predicted
        leader = finalists[costs.index(min(costs))]

        def share(kind: PassKind) -> float:
            value = self.times.get(self._point(kind.name, kind.call_size(leader[0]), leader[1]))
            return kind.per_image * (value if value is not None else 0.0)

        retimed = []
        for index, kind in enumerate(sorted(self.workload, key=share, reverse=True)):
            pair = [self._point(kind.name, kind.call_size(chunk), layout) for chunk, layout in finalists]
            for point in (pair if index % 2 == 0 else pair[::-1]):  # alternate which layout goes first
                value = float(self.measure_fn(point))
                self.times[point] = min(value, self.times.get(point, math.inf))
            retimed.append(f"{kind.name} ({kind.call_size(leader[0])})")
        confirmed = {key: value for key in predicted
                     if (value := self.predict(int(key.split("/")[0]), key.endswith(layout_name(True)))) is not None}
        self.notes.append(
            f"layout: a close call ({', '.join(f'{c}/{layout_name(l)} {v:.3g}' for (c, l), v in zip(finalists, costs))} "
            f"s/image predicted), re-timed in both layouts: {', '.join(retimed)}")
        return confirmed

    def _heaviest(self, settings: ExecutionSettings) -> PassKind | None:
        """The kind that takes most of the predicted time (where thread count and precision are decided)."""
        def share(kind: PassKind) -> float:
            value = self.times.get(self._point(kind.name, kind.call_size(settings.chunk_size), settings.channels_last))
            return kind.per_image * (value if value is not None else 0.0)

        kinds = sorted(self.workload, key=share, reverse=True)
        return kinds[0] if kinds else None

    def _threads(self, settings: ExecutionSettings) -> ExecutionSettings:
        if "threads" not in self.open:
            return settings
        if self.cuda or self.max_threads == 1:
            return replace(settings, threads=1)
        kind = self._heaviest(settings)
        if kind is None:
            return replace(settings, threads=1)
        size = kind.call_size(settings.chunk_size)
        options = sorted({1, self.max_threads} | {2 ** i for i in range(1, int(math.log2(self.max_threads)) + 1)})
        chosen, chosen_time = 1, self.time(self._point(kind.name, size, settings.channels_last, threads=1))
        for threads in options[1:]:
            value = self.time(self._point(kind.name, size, settings.channels_last, threads=threads))
            if value is None or chosen_time is None:
                break
            if value < chosen_time * (1 - self.IMPROVEMENT):
                chosen, chosen_time = threads, value
        return replace(settings, threads=chosen)

    def _reuse(self, settings: ExecutionSettings) -> ExecutionSettings:
        if "reuse_bottom_forward" not in self.open:
            return settings
        plain = next((kind for kind in self.workload if kind.name == "plain" and kind.steps == 1), None)
        if not self.replayable or plain is None:
            return replace(settings, reuse_bottom_forward=True)  # nothing to reuse: the setting is moot
        size = plain.call_size(settings.chunk_size)
        common = dict(threads=settings.threads, precision=settings.precision)
        fresh = self.time(self._point("plain", size, settings.channels_last, **common))
        replayed = self.time(self._point("plain", size, settings.channels_last, replay=True, **common))
        if fresh is None or replayed is None:
            self.notes.append("forward reuse: not measured within the budget; on (it never adds passes)")
            return replace(settings, reuse_bottom_forward=True)
        on = replayed < fresh * (1 - self.IMPROVEMENT) or replayed <= fresh
        if not on:
            self.notes.append(f"forward reuse: a replayed pass ({replayed:.3g} s/input) is not faster than a fresh "
                              f"one ({fresh:.3g} s/input) for this model and size")
        return replace(settings, reuse_bottom_forward=on)

    def _precision(self, settings: ExecutionSettings) -> ExecutionSettings:
        if "precision" not in self.open:
            return settings
        if not self.cuda:
            return replace(settings, precision="fp32")  # TF32 exists on CUDA only
        kind = self._heaviest(settings)
        if kind is None:
            return replace(settings, precision="fp32")
        size = kind.call_size(settings.chunk_size)
        strict = self.time(self._point(kind.name, size, settings.channels_last, threads=settings.threads, precision="fp32"))
        tf32 = self.time(self._point(kind.name, size, settings.channels_last, threads=settings.threads, precision="tf32"))
        if strict is not None and tf32 is not None and tf32 < strict * (1 - self.IMPROVEMENT):
            return replace(settings, precision="tf32")
        return replace(settings, precision="fp32")


    def _fold(self, settings: ExecutionSettings) -> ExecutionSettings:
        """Fold BatchNorms for the forward-only stream (occlusion) where a folded pass measures faster."""
        if "fold_batchnorm" not in self.open:
            return settings
        stream = max((kind for kind in self.workload if not kind.backward and kind.chunked),
                     key=lambda kind: kind.per_image, default=None)
        if not self.foldable or stream is None:
            return replace(settings, fold_batchnorm=False)  # nothing to fold, or no forward-only stream
        size = stream.call_size(settings.chunk_size)
        common = dict(threads=settings.threads, precision=settings.precision)
        kept = self.time(self._point(stream.name, size, settings.channels_last, **common))
        folded = self.time(self._point(stream.name, size, settings.channels_last, fold=True, **common))
        if kept is None or folded is None:
            self.notes.append("BatchNorm folding: not measured within the budget; off")
            return replace(settings, fold_batchnorm=False)
        return replace(settings, fold_batchnorm=folded < kept * (1 - self.IMPROVEMENT / 3))


def open_keys(runtime: Any) -> list[str]:
    """The execution settings a job leaves to the probe ('auto')."""
    return [key for key in TUNED_KEYS if getattr(runtime, key) == "auto"]


def fallback_settings(runtime: Any, device_type: str, chunk_size: int | None = None) -> ExecutionSettings:
    """The explicit values of ``runtime`` and, for 'auto', what holds where nothing was measured (a model
    or evaluator built outside a run, a probe with no budget): chunk 8 on a CPU (``chunk_size`` where
    the caller sized it, e.g. from GPU memory), channels-last, 1 thread, forward reuse on, TF32 on CUDA,
    BatchNorms not folded."""

    def value(key: str, fallback: Any) -> Any:
        given = getattr(runtime, key)
        return fallback if given == "auto" else given

    return ExecutionSettings(
        chunk_size=int(value("chunk_size", chunk_size or CPU_FALLBACK_CHUNK)),
        channels_last=bool(value("channels_last", True)),
        threads=int(value("threads", 1)),
        reuse_bottom_forward=bool(value("reuse_bottom_forward", True)),
        precision=str(value("precision", "tf32" if device_type == "cuda" else "fp32")),
        fold_batchnorm=bool(value("fold_batchnorm", False)),
    )


def with_settings(spec: Any, settings: ExecutionSettings) -> Any:
    """``spec`` with its runtime's execution settings resolved to ``settings`` (what a worker builds from;
    the run's identity stays the spec as given: its hash is taken before)."""
    return spec.model_copy(update={"runtime": spec.runtime.model_copy(update=settings.as_dict())})
