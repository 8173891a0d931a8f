"""The Ray executor: long-lived actors, each holding one ``ShardRunner``, fed by a ``ray.wait`` loop.

Placement: one actor per ``runtime.num_gpus`` GPUs (fractions allowed) and ``runtime.num_cpus``
CPUs, counted per alive node, so a node's leftovers are not summed across nodes;
``runtime.actors`` overrides the count. On a cluster without GPUs that this run started itself
(the embedded ``ray.init()``), GPU actors could never be placed: they become CPU actors, one per
``runtime.num_cpus`` CPUs. Every actor runs torch with ``runtime.threads`` threads, as the inline
executor does, so numbers do not depend on the actor count or the machine. A remote cluster without
GPUs may be autoscaling: the actors are requested anyway (set ``runtime.actors`` to the number
of GPUs the cluster scales to). Every actor builds its model once and keeps it.

Work: the driver keeps ``runtime.in_flight`` shards queued per actor (the next one is waiting
when the current one ends, so the actor never idles on the driver). Not ``ray.util.ActorPool``:
it forgets the work of an actor that dies. Here the driver knows what each actor holds, so an
actor that dies costs the shard it was running (one try of that shard), the shards queued
behind it go back to the queue without costing a try, and any live actor takes them. Actors
restart (``max_restarts=-1``; a restarted actor is probed before it gets work again); Ray's own
task retries are off (``max_task_retries=0``) because a retry pinned to a dead actor would wait
for it, while the driver can send the shard anywhere. A shard that fails deterministically is
retried ``runtime.max_attempts`` times, then recorded (``ShardAttempts``). A retried shard
rewrites the same part files and marker, so a shard run twice never duplicates rows.

Actors write their shard's files themselves and return a small summary; maps and tables never
pass through the object store or the driver. Progress within a shard (each model state of each
batch) goes to a small ``ProgressChannel`` actor as fire-and-forget calls; the driver drains it
every ``POLL_SECONDS`` into the run's progress bar.

User code the job names (a model factory or an attribution callable in a file or a local package)
travels with the actors in their ``runtime_env`` (``py_modules``; ``benchmark.usercode``), so an
actor on any node loads exactly the code the driver validated.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
from ray.exceptions import ActorUnavailableError, RayError, RayTaskError

from .. import usercode
from ..config import JobSpec
from . import signals
from .attempts import ShardAttempts, describe_error
from .driver import ExecutorError, RunOutcome, RunState
from .plan import ShardTask
from .progress import Progress
from .ray_auth import enable_for_driver
from .shard import ShardRunner

RunnerFactory = Callable[..., ShardRunner]
Executor = Callable[[RunState, Progress], RunOutcome]
WAIT_NOTE_SECONDS = 120.0  # nothing finished for this long and no actor ready: say what we wait for
POLL_SECONDS = 1.0  # longest wait for a result before the loop looks at a stop request again
KILL_WAIT_SECONDS = 30.0  # a stopped run waits this long for killed actors to be gone


class ProgressChannel:
    """Collects the actors' progress reports until the driver drains them (a Ray actor, 0 CPU)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int, float, float]] = []

    def report(self, shard: int, attempt: int, units: float, images: float) -> None:
        self.reports.append((shard, attempt, units, images))

    def drain(self) -> list[tuple[int, int, float, float]]:
        reports, self.reports = self.reports, []
        return reports


@dataclass
class RemoteProgress:
    """A worker's ``ProgressSink`` that forwards to the ``ProgressChannel`` without waiting."""

    channel: Any

    def report(self, shard: int, attempt: int, units: float, images: float) -> None:
        self.channel.report.remote(shard, attempt, units, images)


def _channel(name: str | None) -> RemoteProgress | None:
    """The run's progress channel, looked up by name; None (no progress within shards) if it is gone."""
    if name is None:
        return None
    try:
        return RemoteProgress(ray.get_actor(name))
    except ValueError:
        return None


class ShardActor:
    """One worker: builds its ``ShardRunner`` (model, plan, methods) once, then runs shards."""

    def __init__(
        self,
        spec: JobSpec,
        out: str,
        runner_factory: RunnerFactory | None = None,
        shipment: usercode.Shipment | None = None,
        progress_channel: str | None = None,
        lease_token: str | None = None,
    ) -> None:
        """``progress_channel``: the name of the run's ``ProgressChannel`` actor. A name, not its
        handle: an actor handle among the constructor's arguments would keep Ray from restarting
        this actor reliably (ray-project/ray#53727), and Ray warns about it on the terminal."""
        import torch

        torch.set_num_threads(spec.runtime.threads)  # ShardRunner.run sets it too; this covers model loading
        self.code = usercode.install(shipment)  # before the model and methods are built from it
        context = ray.get_runtime_context()
        self.node = context.get_node_id()
        worker = f"{ray.util.get_node_ip_address()}:{os.getpid()}"
        # device None: runtime.device decides; 'auto' means CUDA only when torch sees a GPU, so an
        # actor that Ray gave a GPU on a machine without CUDA (or a fake one in tests) runs on CPU.
        self.runner = (runner_factory or ShardRunner)(spec, out, worker=worker, progress=_channel(progress_channel),
                                                      lease_token=lease_token)

    def describe(self) -> dict[str, Any]:
        return {"worker": self.runner.worker, "device": str(self.runner.model.device), "node": self.node, "code": self.code}

    def run(self, task: ShardTask, attempt: int) -> dict:
        entered = time.perf_counter()
        summary = self.runner.run(task, attempt)
        summary["busy"] = time.perf_counter() - entered  # evaluation and writing: the worker's whole share
        return summary


@dataclass
class ActorPlan:
    count: int
    num_gpus: float
    num_cpus: float
    note: str = ""


def _fits(resources: dict[str, float], num_gpus: float, num_cpus: float) -> int:
    counts = []
    if num_gpus > 0:
        counts.append(math.floor(resources.get("GPU", 0.0) / num_gpus + 1e-9))
    if num_cpus > 0:
        counts.append(math.floor(resources.get("CPU", 0.0) / num_cpus + 1e-9))
    return min(counts) if counts else 1


def plan_actors(spec: JobSpec, nodes: list[dict[str, float]], pending: int, embedded: bool) -> ActorPlan:
    """How many actors, with which resources (see module docstring)."""
    runtime = spec.runtime
    num_gpus, num_cpus, note = runtime.num_gpus, runtime.num_cpus, ""
    has_gpus = any(node.get("GPU", 0) > 0 for node in nodes)
    if num_gpus > 0 and not has_gpus and embedded:
        num_gpus, note = 0.0, "no GPU on this machine: actors run on CPU"
    if runtime.actors is not None:
        count = runtime.actors
    else:
        count = sum(_fits(node, num_gpus, num_cpus) for node in nodes)
        if count == 0:
            count = 1
            note = (note + "; " if note else "") + (
                f"no node offers {num_gpus:g} GPU and {num_cpus:g} CPU now: requesting one actor "
                "(an autoscaling cluster scales up; set runtime.actors for more)"
            )
    return ActorPlan(max(1, min(count, pending)), num_gpus, num_cpus, note)


@dataclass
class Slot:
    """One actor as the driver sees it: what it holds, in the order it will run them."""

    index: int
    name: str
    handle: Any
    flights: deque = field(default_factory=deque)  # ObjectRefs of shards sent, oldest first
    behind: set = field(default_factory=set)  # flights that were queued behind a shard lost with the actor
    healthy: bool = False  # probed and ready for work
    probe: Any = None
    free_since: float = 0.0  # driver clock: when its previous shard was seen done
    info: dict = field(default_factory=dict)


@dataclass
class Flight:
    task: ShardTask
    slot: Slot
    sent: float


class RayExecution:
    def __init__(self, state: RunState, progress: Progress, embedded: bool, runner_factory: RunnerFactory | None):
        self.state = state
        self.progress = progress
        self.attempts = ShardAttempts(state, progress)
        self.embedded = embedded
        self.runner_factory = runner_factory
        self.depth = state.spec.runtime.in_flight
        self.queue: deque[ShardTask] = deque(state.pending)
        self.flights: dict[Any, Flight] = {}
        self.probes: dict[Any, Slot] = {}
        self.slots: list[Slot] = []
        self.dead_reasons: list[str] = []
        self.losses = 0
        self.channel: Any = None
        self.not_started: set[int] = set()  # shards a stop request kept from starting

    # -- actors ------------------------------------------------------------------------------
    def start_actors(self) -> ActorPlan:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        plan = plan_actors(self.state.spec, nodes, len(self.state.pending), self.embedded)
        actor_class = ray.remote(ShardActor)
        prefix = f"benchmark-{self.state.manifest['run_id']}-{uuid.uuid4().hex[:6]}"
        channel = f"{prefix}-progress"
        self.channel = ray.remote(num_cpus=0)(ProgressChannel).options(name=channel).remote()
        shipment = usercode.shipment_for(usercode.references(self.state.spec))
        runtime_env = upload_user_code(shipment)
        for index in range(plan.count):
            name = f"{prefix}-{index}"
            handle = actor_class.options(
                name=name,
                num_gpus=plan.num_gpus,
                num_cpus=plan.num_cpus,
                max_restarts=-1,
                max_task_retries=0,
                scheduling_strategy="SPREAD",
                **({"runtime_env": runtime_env} if runtime_env else {}),
            ).remote(self.state.spec, self.state.out, self.runner_factory, shipment, channel, self.state.lease_token)
            slot = Slot(index, name, handle)
            self.slots.append(slot)
            self._probe(slot)
        return plan

    def _probe(self, slot: Slot) -> None:
        slot.healthy = False
        if slot.probe is None:
            slot.probe = slot.handle.describe.remote()
            self.probes[slot.probe] = slot

    def _probed(self, ref: Any) -> None:
        slot = self.probes.pop(ref)
        slot.probe = None
        try:
            slot.info = ray.get(ref)
        except ActorUnavailableError:  # restarting: ask again
            time.sleep(0.2)
            self._probe(slot)
            return
        except RayError as error:  # its constructor failed, or it cannot restart: gone for good
            self.slots.remove(slot)
            self.dead_reasons.append(f"{slot.name}: {_short(error)}")
            self.progress.note(f"actor {slot.name} is gone: {_short(error)}")
            return
        slot.healthy = True
        slot.free_since = time.perf_counter()
        self.progress.work_started()

    def stop_actors(self, wait: bool = False) -> None:
        """Kill the actors; with ``wait``, return once they are gone (up to ``KILL_WAIT_SECONDS``), so
        that a shard they were writing cannot commit after the driver has cleaned up (a stopped run
        on a cluster whose actors outlive ``ray.kill`` by a moment)."""
        handles = [slot.handle for slot in self.slots] + ([self.channel] if self.channel is not None else [])
        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass
        if wait:
            probes = [slot.handle.describe.remote() for slot in self.slots]
            ray.wait(probes, num_returns=len(probes), timeout=KILL_WAIT_SECONDS)

    # -- shards ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Breadth first: every healthy actor gets a shard before any gets a second one. Beyond the
        first, a shard is queued behind a busy actor only while the queue holds at least one shard
        per actor (those still starting included); the last shards wait on the driver for whichever
        actor frees up first, instead of sitting behind a busy one while another idles."""
        healthy = [slot for slot in self.slots if slot.healthy]
        for level in range(1, self.depth + 1):
            for slot in healthy:
                if not self.queue or (level > 1 and len(self.queue) < len(self.slots)):
                    return
                if len(slot.flights) < level:
                    self._send(self.queue.popleft(), slot)

    def _send(self, task: ShardTask, slot: Slot) -> None:
        attempt = self.attempts.begin(task)
        ref = slot.handle.run.remote(task, attempt)
        slot.flights.append(ref)
        self.flights[ref] = Flight(task, slot, time.perf_counter())

    def _finished(self, ref: Any, result: Any, seen: float) -> None:
        flight = self.flights.pop(ref)
        slot = flight.slot
        slot.flights.remove(ref)
        start = max(flight.sent, slot.free_since)
        slot.free_since = seen
        self.attempts.succeeded(flight.task, result, round_trip=seen - start, worker_seconds=result["busy"])

    def _failed(self, ref: Any, error: RayError) -> None:
        flight = self.flights.pop(ref)
        slot, task = flight.slot, flight.task
        # actors run their calls in order: the oldest one was running, the others waited behind it
        running = slot.flights[0] == ref and ref not in slot.behind
        if running and not isinstance(error, RayTaskError):
            slot.behind.update(list(slot.flights)[1:])
        slot.flights.remove(ref)
        slot.behind.discard(ref)
        if isinstance(error, RayTaskError):  # the shard itself raised: the actor is fine
            cause = error.cause if isinstance(error.cause, BaseException) else error
            retry = self.attempts.failed(task, describe_error(cause), str(error))
        else:  # the actor (or its node) died under the shard
            if running:
                self.losses += 1
                retry = self.attempts.failed(task, f"worker lost ({slot.name}): {_short(error)}")
            else:
                self.attempts.forgive(task)
                retry = True
            if slot in self.slots:
                self._probe(slot)
        if retry:
            self.queue.appendleft(task)

    def _collect_progress(self) -> None:
        """The actors' reports since the last call, into the progress bar (best effort)."""
        try:
            reports = ray.get(self.channel.drain.remote(), timeout=30)
        except RayError:  # the channel is lost: the bar still moves per shard
            return
        for report in reports:
            self.progress.report(*report)

    def run(self) -> RunOutcome:
        stop = signals.active()
        quiet_since = time.monotonic()
        try:
            while self.queue or self.flights:
                if stop.requested:
                    self._stop_dispatching()
                    if not self.flights or stop.abandon:
                        break
                else:
                    self._dispatch()
                waiting = list(self.flights) + ([] if stop.requested else list(self.probes))
                if not waiting:
                    raise ExecutorError(
                        "no actor is left to run the remaining shards: " + ("; ".join(self.dead_reasons) or "unknown")
                    )
                # short waits, so that a stop request is seen at once
                first, _ = ray.wait(waiting, num_returns=1, timeout=min(POLL_SECONDS, stop.remaining()))
                self._collect_progress()
                if not first:
                    if time.monotonic() - quiet_since > WAIT_NOTE_SECONDS:
                        self._note_waiting()
                        quiet_since = time.monotonic()
                    continue
                quiet_since = time.monotonic()
                self._collect(waiting)
        except signals.StopNow:
            pass  # the grace period is over: what still runs is abandoned
        if stop.requested:
            self._record_stop()
        return self.attempts.outcome

    def _collect(self, waiting: list[Any]) -> None:
        ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0)
        seen = time.perf_counter()
        # successes first: a later failure on the same actor then knows which shard was running
        results: list[tuple[Any, Any, RayError | None]] = []
        for ref in ready:
            if ref in self.probes:
                self._probed(ref)
                continue
            try:
                results.append((ref, ray.get(ref), None))
            except RayError as error:
                results.append((ref, None, error))
        for ref, result, error in sorted(results, key=lambda item: item[2] is not None):
            if error is None:
                self._finished(ref, result, seen)
            else:
                self._failed(ref, error)

    # -- stopping (SIGTERM, SIGINT: engine.signals) -------------------------------------------------
    def _stop_dispatching(self) -> None:
        """No new shards; shards queued behind a running one on an actor are taken back (cancelled
        before they start, costing no try); the running ones may finish within the grace period."""
        self.not_started.update(task.shard for task in self.queue)
        self.queue.clear()
        for slot in self.slots:
            for ref in list(slot.flights)[1:]:
                flight = self.flights.pop(ref)
                slot.flights.remove(ref)
                self.attempts.forgive(flight.task)
                self.not_started.add(flight.task.shard)
                try:
                    ray.cancel(ref)
                except Exception:
                    pass  # it may have started meanwhile: the actor is killed at the end anyway

    def _record_stop(self) -> None:
        self.attempts.outcome.details["stopped"] = {
            "abandoned": sorted(flight.task.shard for flight in self.flights.values()),
            "not_started": sorted(self.not_started),
        }

    def _note_waiting(self) -> None:
        if not any(slot.healthy for slot in self.slots):
            self.progress.note(
                f"waiting for actors to start: {len(self.probes)} requested and not ready yet "
                f"(cluster resources now: {ray.available_resources()})"
            )


def upload_user_code(shipment: usercode.Shipment) -> dict[str, Any] | None:
    """The actors' runtime_env for the job's own code: its files and local packages uploaded to the
    cluster (Ray accepts local paths in ``py_modules`` only in ``ray.init``'s job-level runtime_env, so
    they are uploaded here the way ``ray.init`` does it, and the actors get the package URIs)."""
    runtime_env = shipment.runtime_env()
    if runtime_env is None:
        return None
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    with tempfile.TemporaryDirectory() as scratch:
        return upload_py_modules_if_needed(runtime_env, include_gitignore=False, scratch_dir=scratch)


def _short(error: BaseException) -> str:
    """One line: Ray's errors carry a whole traceback; its last exception line says most."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    return f"{type(error).__name__}: {(causes[-1] if causes else lines[0] if lines else '')[:300]}"


def connect(address: str | None) -> bool:
    """Connect this process to Ray; True when it started an embedded cluster (``ray.init()``)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        enable_for_driver(address)
        ray.init(address=address)
        return False
    # an embedded cluster lives as long as this run: no dashboard, the progress bar is the UI
    ray.init(include_dashboard=False)
    return True


def make_ray_executor(address: str | None = None, runner_factory: RunnerFactory | None = None) -> Executor:
    """The executor ``benchmark run --executor ray`` uses: embedded Ray, or the cluster at
    ``address`` / ``RAY_ADDRESS``; a session this process is already connected to is reused."""

    def execute(state: RunState, progress: Progress) -> RunOutcome:
        if not state.pending:
            return RunOutcome(details={"executor": "ray"})
        owns_session = not ray.is_initialized()
        embedded = connect(address)
        signals.reinstall()  # ray.init's embedded node installs its own SIGTERM handler
        execution = RayExecution(state, progress, embedded, runner_factory)
        try:
            started = time.perf_counter()
            plan = execution.start_actors()
            progress.note(
                f"ray: {plan.count} actor(s), {plan.num_gpus:g} GPU + {plan.num_cpus:g} CPU each, "
                f"{execution.depth} shard(s) in flight per actor" + (f" ({plan.note})" if plan.note else "")
            )
            outcome = execution.run()
            outcome.details.update(
                executor="ray",
                actors=plan.count,
                in_flight=execution.depth,
                worker_losses=execution.losses,
                actor_devices=sorted({slot.info.get("device", "?") for slot in execution.slots if slot.info}),
                user_code=next((slot.info["code"] for slot in execution.slots if slot.info.get("code")), {}),
                scheduling=execution.attempts.scheduling(),
                seconds_with_actors=time.perf_counter() - started,
            )
            return outcome
        finally:
            # shards still running were abandoned: on a cluster this driver does not own, wait until
            # their actors are gone before the driver removes what they left
            execution.stop_actors(wait=bool(execution.flights) and not owns_session)
            if owns_session:
                ray.shutdown()

    return execute
