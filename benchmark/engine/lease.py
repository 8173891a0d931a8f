"""One writer per output: a lease on ``--out``, taken before any work (DESIGN §11).

Two drivers on one output would compute every shard twice, and with different specs silently
mix their rows. So a driver first takes the output's lease, ``<out>/_lease.json``: who holds it
(run, job name, spec hash, host, pid, the command) and a heartbeat its holder renews every
``expiry / 6`` seconds. A second driver is refused with a message naming the holder. A lease is
*stale*, and the next driver takes it over, when its holder's heartbeat is older than the
expiry (``--lease-expiry``, default 120 s) or, on the same host, as soon as its process is gone
(a driver killed with SIGKILL is resumed at once). The lease is released on every way out of
the run; a holder that finds its lease taken over stops dispatching (``on_lost``), and its
workers, which may still be computing a shard, check the lease before they write anything
(``LeaseFence``): a shard of a driver that lost its output is dropped, not committed.

Taking, renewing and releasing are compare-and-swap operations:

* local and NFS folders: the lease file is replaced by rename under an exclusive ``flock`` of
  ``_lease.lock`` (NFS maps it to a server-side lock), which exists only while one of these
  operations runs;
* S3 (with boto3 installed): conditional PUTs, ``If-None-Match: *`` to take a free lease and
  ``If-Match: <etag>`` to renew or take over, so two drivers can never both succeed;
* other object stores: write, wait ``SETTLE`` seconds, read back: the last writer wins and the
  loser sees it (best effort; the heartbeat and expiry do the rest).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shlex
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

from ..results.s3 import precondition_failed, s3_location
from ..results.store import OutputStore

LEASE = "_lease.json"
LOCK = "_lease.lock"
DEFAULT_EXPIRY = 120.0
SETTLE = 2.0  # seconds a plain object store gets to show the last writer


class LeaseLost(RuntimeError):
    """The output's lease is no longer this run's: nothing more may be written there."""


class LeaseHeld(RuntimeError):
    """Another driver holds the output's lease; the message names it."""


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_started(pid: int) -> float | None:
    """Start time of a process (clock ticks since boot), to tell a pid reused by another process
    from the holder itself; None where /proc is not available."""
    fields = _proc_stat(pid)
    try:
        return float(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, started: float | None) -> bool:
    """The process exists, is not a zombie (killed, not yet reaped) and is the one that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's
    fields = _proc_stat(pid)
    if fields and fields[0] == b"Z":
        return False
    return started is None or process_started(pid) in (None, started)


@dataclass
class LeaseInfo:
    """What the lease file holds."""

    token: str  # this holding, unique: only its holder renews or releases it
    out: str
    name: str
    spec_hash: str
    run_id: str | None
    host: str
    pid: int
    pid_started: float | None
    command: str
    acquired_at: float
    heartbeat_at: float
    expires_after: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LeaseInfo":
        known = {key: data.get(key) for key in cls.__dataclass_fields__}
        known["expires_after"] = float(known.get("expires_after") or DEFAULT_EXPIRY)
        known["heartbeat_at"] = float(known.get("heartbeat_at") or 0.0)
        known["acquired_at"] = float(known.get("acquired_at") or 0.0)
        return cls(**known)  # type: ignore[arg-type]

    def stale(self, now: float | None = None) -> str | None:
        """Why this lease may be taken over, or None while its holder is alive."""
        now = time.time() if now is None else now
        if self.host == platform.node() and isinstance(self.pid, int) and not process_alive(self.pid, self.pid_started):
            return f"its process {self.pid} on this host is gone"
        silent = now - self.heartbeat_at
        if silent > self.expires_after:
            return f"no heartbeat for {silent:.0f} s (expiry {self.expires_after:g} s)"
        return None

    def describe(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.acquired_at))
        run = f" ({self.run_id})" if self.run_id else ""
        return (f"run '{self.name}'{run}, spec {self.spec_hash}, by pid {self.pid} on {self.host} since {started}, "
                f"last heartbeat {max(0.0, now - self.heartbeat_at):.0f} s ago; command: {self.command}")


# -- backends: read, and compare-and-swap writes ------------------------------------------------------
Version = Any


class LocalBackend:
    """A lease file in a local or NFS folder; every change under an exclusive flock."""

    def __init__(self, store: OutputStore) -> None:
        self.folder = store.root
        self.path = os.path.join(self.folder, LEASE)
        self.lock_path = os.path.join(self.folder, LOCK)
        self.created_folder = False

    def read(self) -> tuple[dict | None, Version]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(data), hashlib.sha256(data).hexdigest()
        except ValueError:  # torn by a crash of an old writer: treat as stale, replaceable
            return {}, hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            self.created_folder = True
        while True:
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)  # the lock file was removed by the holder before us: lock the new one
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.lock_path)  # exists only while a change is being made
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def _write(self, content: dict) -> None:
        temporary = os.path.join(self.folder, f".lease-{uuid.uuid4().hex}")
        with open(temporary, "w") as handle:
            json.dump(content, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def create(self, content: dict) -> bool:
        with self._locked():
            if os.path.exists(self.path):
                return False
            self._write(content)
            return True

    def replace(self, content: dict, version: Version) -> bool:
        with self._locked():
            if self.read()[1] != version:
                return False
            self._write(content)
            return True

    def remove(self, version: Version) -> bool:
        with self._locked():
            if self.read()[1] != version:
                return False
            os.remove(self.path)
        if self.created_folder:  # a run refused before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)
        return True


class S3Backend:
    """Conditional PUTs (If-None-Match / If-Match on the ETag) through boto3."""

    def __init__(self, store: OutputStore, location) -> None:
        self.location = location
        self.key = location.key(LEASE)

    def read(self) -> tuple[dict | None, Version]:
        client = self.location.client
        try:
            answer = client.get_object(Bucket=self.location.bucket, Key=self.key)
        except client.exceptions.NoSuchKey:
            return None, None
        body = answer["Body"].read()
        try:
            return json.loads(body), answer["ETag"]
        except ValueError:
            return {}, answer["ETag"]

    def _put(self, content: dict, **condition: str) -> bool:
        try:
            self.location.client.put_object(Bucket=self.location.bucket, Key=self.key,
                                            Body=json.dumps(content, indent=2, sort_keys=True).encode(), **condition)
        except Exception as error:
            if precondition_failed(error):
                return False
            raise
        return True

    def create(self, content: dict) -> bool:
        return self._put(content, IfNoneMatch="*")

    def replace(self, content: dict, version: Version) -> bool:
        return self._put(content, IfMatch=version)

    def remove(self, version: Version) -> bool:
        if self.read()[1] != version:
            return False
        self.location.client.delete_object(Bucket=self.location.bucket, Key=self.key)
        return True


class StoreBackend:
    """Any pyarrow filesystem: write, let the store settle, read back (the last writer wins)."""

    def __init__(self, store: OutputStore) -> None:
        self.store = store

    def read(self) -> tuple[dict | None, Version]:
        data = self.store.read_bytes(LEASE)
        if data is None:
            return None, None
        try:
            return json.loads(data), hashlib.sha256(data).hexdigest()
        except ValueError:
            return {}, hashlib.sha256(data).hexdigest()

    def _write_and_check(self, content: dict) -> bool:
        self.store.write_json(LEASE, content)
        time.sleep(SETTLE)
        current, _ = self.read()
        return (current or {}).get("token") == content["token"]

    def create(self, content: dict) -> bool:
        return self.read()[0] is None and self._write_and_check(content)

    def replace(self, content: dict, version: Version) -> bool:
        return self.read()[1] == version and self._write_and_check(content)

    def remove(self, version: Version) -> bool:
        if self.read()[1] != version:
            return False
        self.store.delete(LEASE)
        return True


def backend_for(store: OutputStore):
    if not store.object_store:
        return LocalBackend(store)
    location = s3_location(store)
    return S3Backend(store, location) if location is not None else StoreBackend(store)


# -- the lease ----------------------------------------------------------------------------------------
def current_command() -> str:
    return shlex.join(["benchmark", *sys.argv[1:]]) if sys.argv and sys.argv[0] else "benchmark"


class OutputLease:
    """The lease of one output, held by this process (see module docstring)."""

    def __init__(self, store: OutputStore, info: LeaseInfo, backend, version: Version,
                 on_lost: Callable[[str], None] | None = None, took_over: LeaseInfo | None = None,
                 stale_reason: str | None = None) -> None:
        self.store, self.info, self.backend, self.version = store, info, backend, version
        self.on_lost = on_lost
        self.took_over = took_over  # the stale lease this one replaced, if any
        self.stale_reason = stale_reason  # why it was stale
        self.lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # taking ----------------------------------------------------------------------------------------
    @classmethod
    def acquire(cls, store: OutputStore, *, name: str, spec_hash: str, run_id: str | None = None,
                expiry: float = DEFAULT_EXPIRY, command: str | None = None,
                on_lost: Callable[[str], None] | None = None) -> "OutputLease":
        if expiry <= 0:
            raise ValueError(f"--lease-expiry must be positive, got {expiry:g}")
        backend = backend_for(store)
        now = time.time()
        info = LeaseInfo(
            token=uuid.uuid4().hex, out=store.uri, name=name, spec_hash=spec_hash, run_id=run_id,
            host=platform.node(), pid=os.getpid(), pid_started=process_started(os.getpid()),
            command=command or current_command(), acquired_at=now, heartbeat_at=now, expires_after=expiry,
        )
        for _ in range(5):
            current, version = backend.read()
            if current is None:
                if backend.create(asdict(info)):
                    return cls._held(store, info, backend, on_lost)
                continue  # someone was faster: read what they wrote
            holder = LeaseInfo.from_json(current) if current else None
            why = "its file is unreadable" if holder is None else holder.stale()
            if why is None:
                raise LeaseHeld(
                    f"{store.display()} is being written by another driver: {holder.describe()}.\n"  # type: ignore[union-attr]
                    "One driver writes an output at a time. Wait for it to finish or stop it, or choose another --out. "
                    f"A lease whose holder died is taken over after {holder.expires_after:g} s without a heartbeat "  # type: ignore[union-attr]
                    "(on the same host as soon as its process is gone)."
                )
            if backend.replace(asdict(info), version):
                return cls._held(store, info, backend, on_lost, holder, why)
        raise LeaseHeld(f"{store.display()}: could not take the output's lease; another driver is taking it right now")

    @classmethod
    def _held(cls, store, info, backend, on_lost, took_over=None, why=None) -> "OutputLease":
        content, version = backend.read()
        if not content or content.get("token") != info.token:  # a store that ignores conditions
            raise LeaseHeld(f"{store.display()}: another driver took the output's lease at the same moment")
        lease = cls(store, info, backend, version, on_lost, took_over, why)
        lease._start()
        return lease

    # holding ---------------------------------------------------------------------------------------
    @property
    def interval(self) -> float:
        return max(0.5, self.info.expires_after / 6)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except Exception as error:  # a store hiccup: try again at the next beat
                print(f"warning: could not renew the lease on {self.store.display()}: {error}", file=sys.stderr)
            if self.lost:
                return

    def renew(self, **changes: Any) -> None:
        """Heartbeat (and record ``changes``, e.g. the run id once the manifest has it)."""
        with self._lock:
            if self.lost or self._stop.is_set() and not changes:
                return
            current, version = self.backend.read()
            if not current or current.get("token") != self.info.token:
                holder = LeaseInfo.from_json(current).describe() if current else "nobody (the lease file is gone)"
                self._lose(f"the output's lease was taken over: it is now held by {holder}")
                return
            updated = LeaseInfo(**{**asdict(self.info), **changes, "heartbeat_at": time.time()})
            if not self.backend.replace(asdict(updated), version):
                self._lose("the output's lease changed hands during a heartbeat")
                return
            self.info, self.version = updated, self.backend.read()[1]

    def _lose(self, reason: str) -> None:
        self.lost = reason
        if self.on_lost is not None:
            self.on_lost(reason)

    # releasing -------------------------------------------------------------------------------------
    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            if self.lost:
                return
            current, version = self.backend.read()
            if current and current.get("token") == self.info.token:
                self.backend.remove(version)

    def __enter__(self) -> "OutputLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lease(store: OutputStore) -> LeaseInfo | None:
    """The output's current lease (held or stale), for `benchmark status` and `benchmark submit`."""
    content, _ = backend_for(store).read()
    return LeaseInfo.from_json(content) if content else None


@dataclass(frozen=True)
class LeaseFence:
    """Called by a shard's writer before it writes (``ShardWriter(fence=...)``): raises ``LeaseLost``
    unless the output's lease still carries ``token``. A driver whose lease was taken over stops
    dispatching at its next heartbeat, but shards already running on its workers would otherwise
    commit into an output that now belongs to another run (another spec after a ``--new-run``).
    One read of the lease per check, so a stale commit can slip through only in the moment
    between the check and the marker, not for the minutes a shard runs."""

    out: str
    token: str

    def __call__(self) -> None:
        store = OutputStore(self.out)
        content, _ = backend_for(store).read()
        if not content or content.get("token") != self.token:
            holder = LeaseInfo.from_json(content).describe() if content else "nobody (the lease file is gone)"
            raise LeaseLost(f"{store.display()}: this run no longer holds the output's lease (now held by {holder}); "
                            "the shard is not written")
