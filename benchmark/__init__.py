"""Randomization sanity checks vs. occlusion faithfulness for attribution methods, at cluster scale."""

__version__ = "0.1.0"
