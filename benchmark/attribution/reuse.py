"""Reusing the forward pass of the trained bottom of the network across randomization stages.

Top-down randomization changes the top of the network only: in stage k every module that runs
before the first randomized module computes exactly what it computed for the trained model. So the
first single-point gradient of a batch (stage 0) is *recorded*: its forward pass keeps its autograd
graph, and the output of every module is kept with the order in which modules started and ended.
A later stage then runs the model with the modules that ended before its first randomized module
started swapped for ``Replay`` modules returning the recorded outputs: only the randomized top is
computed again, and the backward pass runs on through the recorded bottom graph (kept with
``retain_graph``). Nothing depends on the architecture: which modules are replayed follows from
the recorded call order and the randomized module names.

A recording belongs to one tile of images and one set of backward rules: the plain gradient
(shared by gradient and gradient×input), and each method whose rules are all attached lean
(``lean_rules``: guided backprop at ReLUs, LRP's composites), whose rules are nodes of the graph
and stay in it. Rules attached by zennit are hooks that zennit removes from the graph with the
composite after each call, so passes under those are never recorded (``lean_rules.replayable``).
The canonizers LRP needs rewrite the same trained modules into the same parameters at every call;
so a recorded rule node also keeps the modified passes of its rule (``lean_rules.memoizing``) and
a replay runs only their gradient.

A module is replayed only if it was called once, returned a tensor, and nothing modified that
tensor in place later in the recorded pass (torchvision's stem ReLU runs in place on the
BatchNorm output, so that BatchNorm runs again: cheap, and correct). If a replayed output is
changed in place anyway, the pass fails loudly instead of corrupting later stages.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from .lean_rules import memoizing

NEVER = sys.maxsize  # a call index after every call

# The modules replayed in the pass running now (empty: a full forward); read by the speed accounting.
REPLAYED: ContextVar[tuple[str, ...]] = ContextVar("replayed", default=())


class Replay(nn.Module):
    """Stands in for a module of the trained bottom: returns its recorded output, whatever the input."""

    def __init__(self, output: Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.output


@dataclass
class Recording:
    """One forward pass of the model with its graph, and when each module ran in it."""

    leaf: Tensor  # the input the graph starts from; every reused gradient is taken with respect to it
    outputs: dict[str, Tensor] = field(default_factory=dict)  # module -> its tensor output
    versions: dict[str, int] = field(default_factory=dict)  # version counter of that output when returned
    starts: dict[str, list[int]] = field(default_factory=dict)  # module -> when each of its calls started
    ends: dict[str, int] = field(default_factory=dict)  # module -> when its last call ended
    trained_until: int = NEVER  # start of the first module that was randomized while recording
    touched: set[str] = field(default_factory=set)  # modules randomized at any time since recording

    def first_start(self, modules: frozenset[str] | set[str]) -> int:
        return min((index for name in modules for index in self.starts.get(name, ())), default=NEVER)

    def limit(self, randomized: frozenset[str] | set[str]) -> int:
        """Modules that ended before this call index can be replayed: nothing they ran was randomized
        now, when recorded, or in between (a randomized and restored weight has the same values but
        a new version, and autograd refuses a graph that saved the old one)."""
        return min(self.first_start(randomized | self.touched), self.trained_until)

    def replayable(self, randomized: frozenset[str] | set[str]) -> tuple[str, ...]:
        """The outermost modules that can be replayed in a pass with these modules randomized."""
        limit = self.limit(randomized)
        candidates = {name for name, end in self.ends.items() if name and end < limit and self._intact(name)}
        return tuple(sorted(name for name in candidates if not any(p in candidates for p in _parents(name))))

    def _intact(self, name: str) -> bool:
        """Called once, returned a tensor, and that tensor was not modified in place afterwards."""
        output = self.outputs.get(name)
        return len(self.starts[name]) == 1 and output is not None and output._version == self.versions[name]


def _parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def record_forward(module: nn.Module, leaf: Tensor, randomized: frozenset[str] | set[str]) -> tuple[Tensor, Recording]:
    """The model's output for ``leaf`` with every module's output and call order recorded."""
    recording = Recording(leaf)
    clock = itertools.count()
    handles = []
    for name, child in module.named_modules():

        def started(_: nn.Module, args: Any, name: str = name) -> None:
            recording.starts.setdefault(name, []).append(next(clock))

        def ended(_: nn.Module, args: Any, output: Any, name: str = name) -> None:
            recording.ends[name] = next(clock)
            if isinstance(output, Tensor):
                recording.outputs[name], recording.versions[name] = output, output._version
            else:
                recording.outputs.pop(name, None)

        handles.append(child.register_forward_pre_hook(started))
        handles.append(child.register_forward_hook(ended))
    try:
        with memoizing():  # lean rule nodes keep their modified passes for the replays
            logits = module(leaf)
    finally:
        for handle in handles:
            handle.remove()
    recording.trained_until = recording.first_start(randomized)
    recording.touched = set(randomized)
    return logits, recording


@contextmanager
def replaying(module: nn.Module, recording: Recording, names: tuple[str, ...]) -> Iterator[None]:
    """``module`` with the named submodules swapped for their recorded outputs (put back afterwards)."""
    modules = dict(module.named_modules())
    swapped = []
    token = REPLAYED.set(names)
    try:
        for name in names:
            parent_name, _, attribute = name.rpartition(".")
            parent = modules[parent_name]
            swapped.append((parent, attribute, parent._modules[attribute]))
            parent._modules[attribute] = Replay(recording.outputs[name])
        yield
    finally:
        for parent, attribute, original in reversed(swapped):
            parent._modules[attribute] = original
        REPLAYED.reset(token)
    changed = [name for name in names if recording.outputs[name]._version != recording.versions[name]]
    if changed:
        raise RuntimeError(
            f"forward reuse: the recorded outputs of {', '.join(changed)} were modified in place by a later "
            "module; set runtime.reuse_bottom_forward: false for this model"
        )


class BottomReuse:
    """One batch's recorded plain forward passes, one per tile of images.

    Built once per batch with the batch's inputs; the randomization check hands it to every stage
    together with the modules randomized in that stage (``at``).
    """

    def __init__(self, inputs: Tensor) -> None:
        self.inputs = inputs
        self.recordings: dict[tuple[str | None, int, int], Recording] = {}  # (rules, tile start, tile stop)

    def at(self, randomized: set[str] | frozenset[str]) -> "StageReuse":
        """The recordings as seen from a stage with these modules randomized (call once per stage)."""
        for recording in self.recordings.values():
            recording.touched |= randomized
        return StageReuse(self, frozenset(randomized))

    def release(self) -> None:
        """Free the recorded graphs (the batch's stages are done)."""
        self.recordings.clear()


@dataclass(frozen=True)
class StageReuse:
    reuse: BottomReuse
    randomized: frozenset[str]

    def covers(self, inputs: Tensor) -> bool:
        return inputs is self.reuse.inputs

    def forward(
        self, module: nn.Module, points: Tensor, images: slice, rules: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """(leaf, output) of one gradient-enabled pass over the tile ``images`` under ``rules`` (the
        method whose lean rules are registered; None: plain): recorded the first time, replayed from
        the recording after (backward through it with ``retain_graph``), and recorded again where a
        fresh recording can replay more than the old one."""
        key = (rules, images.start, images.stop)
        recording = self.reuse.recordings.get(key)
        if recording is None or recording.limit(self.randomized) < recording.first_start(self.randomized):
            # none yet, or a fresh one would replay more (a new seed restarts from the trained model)
            leaf = input_leaf(points)
            logits, self.reuse.recordings[key] = record_forward(module, leaf, self.randomized)
            return leaf, logits
        with replaying(module, recording, recording.replayable(self.randomized)):
            logits = module(recording.leaf)
        return recording.leaf, logits


def input_leaf(points: Tensor) -> Tensor:
    """An alias of the points as the autograd leaf (no copy); inference tensors cannot enter autograd, so copy those."""
    return (points.clone() if points.is_inference() else points.detach()).requires_grad_(True)
