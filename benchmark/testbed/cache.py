"""The trained test bed on disk: trained once per machine, found again by the hash of what made it.

The key is the SHA-256 of everything the weights depend on: the source of the training code, the
architecture and the digits pipeline, the training data, the recipe and torch's version. Change
any of them and the next use trains a new network (about 10 CPU-seconds); otherwise it is loaded.
Files live in ``$BENCHMARK_CACHE/testbed`` (default ``$XDG_CACHE_HOME/benchmark/testbed``, i.e.
``~/.cache/benchmark/testbed``): ``tiny-resnet-digits-<key>.pt`` (a state dict, what
``model.weights`` loads) and ``….json`` (recipe, accuracy, training time). Concurrent users (Ray
actors, parallel test processes) wait on a file lock instead of training twice; files are written
under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..data import digits
from ..models import tiny_resnet
from . import train as training
from .train import Recipe

RECIPE = Recipe()
STEM = "tiny-resnet-digits"


@dataclass(frozen=True)
class TestBed:
    path: Path  # the state dict
    info: dict  # recipe, key, accuracies, training seconds, versions

    @property
    def val_accuracy(self) -> float:
        return float(self.info["val_accuracy"])

    def describe(self) -> str:
        return (
            f"testbed {self.path} (tiny-resnet trained on the digits, validation accuracy "
            f"{self.val_accuracy:.4f}, key {self.info['key']})"
        )


def cache_dir() -> Path:
    root = os.environ.get("BENCHMARK_CACHE")
    if root:
        return Path(root).expanduser() / "testbed"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "benchmark" / "testbed"


def cache_key(recipe: Recipe = RECIPE) -> str:
    hasher = hashlib.sha256()
    for module in (training, tiny_resnet, digits):
        hasher.update(inspect.getsource(module).encode())
    images, labels = digits.load_digits()
    hasher.update(images.astype("float64").tobytes())
    hasher.update(labels.astype("int64").tobytes())
    hasher.update(json.dumps(recipe.describe(), sort_keys=True).encode())
    hasher.update(torch.__version__.split("+")[0].encode())
    return hasher.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)


def testbed(
    recipe: Recipe = RECIPE, directory: Path | None = None, retrain: bool = False, log: Callable[[str], None] | None = None
) -> TestBed:
    """The trained test bed's weights file and facts, training it first if this machine has none."""
    directory = directory or cache_dir()
    key = cache_key(recipe)
    weights, facts = directory / f"{STEM}-{key}.pt", directory / f"{STEM}-{key}.json"
    with _locked(directory / f"{STEM}-{key}.lock"):
        if weights.is_file() and facts.is_file() and not retrain:
            return TestBed(weights, json.loads(facts.read_text()))
        if log:
            log(f"training the test bed (tiny-resnet on the digits, {recipe.epochs} epochs) into {weights}")
        result = training.train(recipe)
        info = {
            "key": key,
            "recipe": recipe.describe(),
            "val_accuracy": result.val_accuracy,
            "train_accuracy": result.train_accuracy,
            "train_seconds": result.seconds,
            "torch": torch.__version__,
            "created_at": time.time(),
        }
        _write_atomically(weights, lambda path: torch.save(result.state_dict, path))
        _write_atomically(facts, lambda path: path.write_text(json.dumps(info, indent=2)))
    if log:
        log(f"trained in {result.seconds:.1f} s, validation accuracy {result.val_accuracy:.4f}")
    return TestBed(weights, info)
