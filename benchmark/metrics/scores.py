"""Every score a method gets, as one registered object: its name, which way is better and its label.

Aggregation ranks methods by these scores, plots and the report name them, spec validation lists
them: all read this registry, so a new score is one ``register_score`` (a new similarity metric one
``register_metric``, see ``benchmark.metrics.base``) and nothing else. There is no default
direction: a score nobody registered cannot be ranked.

Besides the similarity metrics of the randomization check (registered in ``benchmark.metrics``),
the occlusion test's summaries of DESIGN §6 are scores too: ``auc``, the mean softmax probability
over the curve (lower is better: the map found what the model needs), and ``aopc``, the mean drop
from the unoccluded probability (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

Better = Literal["lower", "higher"]
DIRECTIONS: tuple[Better, ...] = ("lower", "higher")


@dataclass(frozen=True)
class Score:
    """A number per image and method, and which way ranks a method first.

    For the similarity metrics of the randomization check a method "passes" when its map changes a
    lot: low similarity (SSIM, Spearman) or high distance (MSE) ranks first.
    """

    name: str
    label: str  # how figures and the report name it: "SSIM", "Spearman rank correlation"
    better: Better
    short: str | None = None  # a shorter label for axes ("Spearman"); default: ``label``

    def __post_init__(self) -> None:
        if self.better not in DIRECTIONS:
            raise ValueError(f"score '{self.name}': better must be one of {DIRECTIONS}, got {self.better!r}")
        if not self.name or not self.name.isidentifier():
            raise ValueError(f"score name must be an identifier, got {self.name!r}")

    @property
    def axis_label(self) -> str:
        return self.short or self.label

    @property
    def better_text(self) -> str:
        return f"{self.better.capitalize()} is better."


SCORES: dict[str, Score] = {}

S = TypeVar("S", bound=Score)


def register_score(score: S) -> S:
    """Make ``score`` known by its name; registering another object under a taken name is an error."""
    known = SCORES.get(score.name)
    if known is not None and known != score:
        raise ValueError(f"a different score is already registered as '{score.name}': {known}")
    SCORES[score.name] = score
    return score


def unregister_score(name: str) -> None:
    """Forget a score (tests that register a toy one clean up with this)."""
    SCORES.pop(name, None)


def score(name: str) -> Score:
    """The registered score ``name``; an unknown name is an error listing the registered ones."""
    try:
        return SCORES[name]
    except KeyError:
        raise KeyError(f"unknown score '{name}'; registered: {', '.join(SCORES)}") from None


def label(name: str) -> str:
    """The score's label, or its name when this process has not registered it (a plugin of another run)."""
    known = SCORES.get(name)
    return known.label if known is not None else name


AUC = register_score(Score("auc", "mean softmax probability over the occlusion curve", "lower", short="auc"))
AOPC = register_score(Score("aopc", "AOPC (mean drop of the softmax probability)", "higher", short="AOPC"))
