"""The experiments of DESIGN §5–7 as observers of one walk over each batch's model states.

``base`` (the ``Experiment`` interface and its registry), ``state`` (a batch and a model state),
``walk`` (the states, each produced once), ``batch`` (the evaluator feeding every enabled
experiment). The registered experiments, in the order they observe a state and write tables:
``occlusion`` (faithfulness), ``randomization`` (the check), ``saved_maps`` (``runtime.save_maps``),
``activations``, ``logits``, ``skip_path``, ``kept_activation_explanation``, then the repaired checks
writing ``check_scores`` (docs/repaired-checks.md): ``smprt``, ``emprt``, ``random_logit``,
``mprt_invariant_mask``, ``mprt_non_baseline``; and ``target_logits`` (the sign-flip diagnostic, with
every randomization check).
"""

from . import faithfulness, randomization_check, saved_maps, activations, logits, skip_path, kept_features  # noqa: F401,I001  (registration order)
from . import smooth_mprt, efficient_mprt, random_logit, invariant_mask, non_baseline, sign_flips  # noqa: F401,I001
from .base import EXPERIMENTS, Experiment, Setup, enabled_experiments, experiment_tables, register_experiment, unregister_experiment
from .state import Batch, ModelState

__all__ = [
    "EXPERIMENTS",
    "Batch",
    "Experiment",
    "ModelState",
    "Setup",
    "enabled_experiments",
    "experiment_tables",
    "register_experiment",
    "unregister_experiment",
]
