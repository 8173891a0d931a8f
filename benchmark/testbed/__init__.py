"""The trained-network test bed: a small ResNet trained on scikit-learn's digits, cached per machine.

Random networks hide what the paper is about (on a random ReLU network integrated gradients equal
gradient×input and guided backprop barely changes); this one is trained (about 99 % validation
accuracy, seconds of CPU) so tests and ``jobs/digits.yaml`` see real effects. ``model.weights:
testbed`` (with ``model.name: tiny-resnet``) loads it, training it first where it is missing;
``benchmark testbed`` does the same and prints where it is.
"""

from .cache import RECIPE, TestBed, cache_dir, cache_key, testbed
from .train import MIN_VAL_ACCURACY, Recipe

__all__ = ["MIN_VAL_ACCURACY", "RECIPE", "Recipe", "TestBed", "cache_dir", "cache_key", "testbed"]
