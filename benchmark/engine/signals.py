"""SIGTERM and SIGINT end a run in order (DESIGN §11).

Schedulers and Kubernetes stop a job with SIGTERM (then SIGKILL after a grace period); a user
presses Ctrl-C. Either way the driver stops dispatching shards, lets the shards already running
finish for up to ``--stop-grace`` seconds, then abandons the rest (they are not committed, so a
resume runs them again), releases the output's lease, prints what was kept and the command that
resumes, and exits with 128 + the signal's number (143 for SIGTERM, 130 for SIGINT). A second
signal abandons the running shards at once.

While a run is in progress its ``StopRequest`` is *active*: executors ask ``active()`` whether
to stop (``requested``) and when running shards must be abandoned (``abandon``). When the grace
period ends the main thread is interrupted with ``StopNow``, so a shard computing in this very
process (the inline executor) is abandoned too.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from typing import Any

DEFAULT_GRACE = 25.0  # seconds: inside Kubernetes' default 30 s termination grace period
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopNow(BaseException):
    """Raised in the main thread when the grace period is over (or at a second signal): the
    shards still running are abandoned. A BaseException, so that ``except Exception`` around a
    shard does not count it as the shard's failure."""


class StopRequest:
    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        self.grace = grace
        self.signum: int | None = None
        self.reason: str | None = None
        self.deadline: float | None = None
        self.abandon = False  # the grace period is over: stop waiting for running shards
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self._timer: threading.Timer | None = None

    # -- state the executors read ----------------------------------------------------------------
    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 1

    def remaining(self) -> float:
        """Seconds left of the grace period (infinite while no stop was requested)."""
        return float("inf") if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    # -- asking to stop ----------------------------------------------------------------------------
    def request(self, reason: str, signum: int | None = None) -> None:
        """Stop dispatching; running shards get the grace period. Also used without a signal (the
        output's lease was lost)."""
        if self.requested:
            return
        self.signum, self.reason = signum, reason
        self.deadline = time.monotonic() + self.grace
        self._event.set()
        print(
            f"\n{reason}: no new shards are started; running shards get {self.grace:g} s to finish "
            f"(signal again to abandon them now)",
            file=sys.stderr, flush=True,
        )
        self._timer = threading.Timer(self.grace, self._grace_over)
        self._timer.daemon = True
        self._timer.start()

    def _grace_over(self) -> None:
        self.abandon = True
        if threading.main_thread().is_alive():
            _thread.interrupt_main(self.signum or signal.SIGINT)  # our handler raises StopNow there

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            self.request(f"received {signal.Signals(signum).name}", signum)
            return
        self.abandon = True
        raise StopNow(signum)

    # -- installing ------------------------------------------------------------------------------
    def install(self) -> "StopRequest":
        """Handle SIGTERM and SIGINT (main thread only); again after a library replaced them (ray.init)."""
        global _ACTIVE
        _ACTIVE = self
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                previous = signal.signal(signum, self._handle)
                self._previous.setdefault(signum, previous)
        return self

    def uninstall(self) -> None:
        global _ACTIVE
        if self._timer is not None:
            self._timer.cancel()
        if threading.current_thread() is threading.main_thread():
            for signum, previous in self._previous.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        if _ACTIVE is self:
            _ACTIVE = _INERT

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


_INERT = StopRequest()  # never requested: what executors see outside a `benchmark run`
_ACTIVE = _INERT


def active() -> StopRequest:
    """The stop request of the run in progress in this process (an inert one if none)."""
    return _ACTIVE


def reinstall() -> None:
    """Take SIGTERM/SIGINT back after a library installed its own handlers (Ray's embedded node
    exits on SIGTERM from inside its handler, with a stack dump)."""
    if _ACTIVE is not _INERT:
        _ACTIVE.install()
