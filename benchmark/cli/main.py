"""``benchmark``: the command line. Each command lives in its own module under ``benchmark.cli``
and registers its parser; heavy imports happen only when a command runs."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command module -> one line of help; each module defines register(subparsers).
COMMAND_MODULES = (
    "benchmark.cli.run",
    "benchmark.cli.status",
    "benchmark.cli.bench",
    "benchmark.cli.fixtures",
    "benchmark.cli.testbed",
    "benchmark.cli.finetune",
    "benchmark.cli.query",
    "benchmark.cli.aggregate",
    "benchmark.cli.plot",
    "benchmark.cli.report",
    "benchmark.cli.submit",
    "benchmark.cli.jobs",
)


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story (bad spec, missing weights, …)."""
    from ..config import SpecError
    from ..data import AnnotationError
    from ..engine.driver import ExecutorError
    from ..engine.lease import LeaseHeld
    from ..engine.manifest import ResumeRefused
    from ..engine.submit import SubmitError
    from ..models import WeightsUnavailable
    from ..results import SchemaVersionError
    from ..results.query import ResultsError

    return (
        UserError, SpecError, AnnotationError, ResumeRefused, WeightsUnavailable, FileNotFoundError,
        SchemaVersionError, ResultsError, ExecutorError, SubmitError, LeaseHeld,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark",
        description="Randomization sanity checks vs. occlusion faithfulness of attribution methods, at cluster scale.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if isinstance(error, user_errors()):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


def program() -> None:
    """The ``benchmark`` program: ``main``, then an immediate exit with its status once the output
    is flushed. Native thread pools (Arrow's, DuckDB's, torch's) torn down during interpreter
    shutdown can abort a finished command ('terminate called without an active exception',
    apache/arrow#34314) and turn a success into status 134; everything the commands write is
    closed before ``main`` returns, and Ray sessions are shut down by the run itself."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `benchmark status OUT | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, as a shell reports it
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    program()
