"""Randomization sanity checks vs. occlusion faithfulness for attribution methods, at cluster scale.

The Python API (``benchmark.api``) is imported on first use, so ``import benchmark`` stays light::

    import benchmark

    results = benchmark.run("jobs/smoke.yaml", out="runs/smoke", executor="inline")
    results.frame("occlusion")
"""

__version__ = "0.1.0"

_API = {
    "run": "benchmark.api",
    "validate": "benchmark.api",
    "RunFailed": "benchmark.api",
    "open_results": "benchmark.results.query",
    "Results": "benchmark.results.query",
    "JobSpec": "benchmark.config.spec",
    "SpecError": "benchmark.config.load",
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["JobSpec", "Results", "RunFailed", "SpecError", "open_results", "run", "validate"]
