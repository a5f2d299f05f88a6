"""The task-status watcher (DESIGN 3.4): a live, fail-closed view of the local agent's
closed-task set, from `mandate.delegation.v1.TaskStatus/Watch` on its unix socket.

A background thread subscribes with the `workload.spiffe.io: true` header and reconnects with
exponential backoff. Checks read the newest snapshot and refuse every delegated caller once
that snapshot's `as_of_unix_ms` is older than the staleness bound: staleness counts from
`as_of`, not from arrival, so a verifier whose agent lost the server fails closed as well.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import grpc

from ._proto import taskstatus_pb2, taskstatus_pb2_grpc
from .refusal import Refusal

__all__ = [
    "DEFAULT_STALENESS",
    "WORKLOAD_HEADER",
    "Snapshot",
    "TaskStatusWatcher",
    "check_snapshot",
    "socket_path_from_endpoint",
    "grpc_target",
]

#: The default staleness bound of DESIGN 3.4, in seconds.
DEFAULT_STALENESS = 15.0
#: The security header every call on the agent socket carries.
WORKLOAD_HEADER = (("workload.spiffe.io", "true"),)

#: Channel options for the agent's streams: a closed-task set or a CRL of 100k tasks (DESIGN 5)
#: is larger than grpc's default 4 MiB receive limit.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1),)

_log = logging.getLogger(__name__)


def socket_path_from_endpoint(endpoint: str | None) -> str:
    """The socket path of a SPIFFE endpoint (`unix:///p`, `unix:/p` or `/p`); None reads
    `SPIFFE_ENDPOINT_SOCKET`. Raises ValueError for anything that is not a unix socket."""
    if endpoint is None:
        endpoint = os.environ.get("SPIFFE_ENDPOINT_SOCKET")
        if not endpoint:
            raise ValueError("SPIFFE_ENDPOINT_SOCKET is not set")
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:") :]
    else:
        path = endpoint
    if not path.startswith("/"):
        raise ValueError(f"endpoint {endpoint!r} is not a unix socket address")
    return path


def grpc_target(endpoint: str | None) -> str:
    """The grpc target (`unix:/path`) of a SPIFFE endpoint."""
    return "unix:" + socket_path_from_endpoint(endpoint)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of the trust domain's closed-task set, as the agent sent it."""

    closed_task_ids: frozenset[str]
    sequence: int
    as_of_unix_ms: int


def check_snapshot(snapshot: Snapshot | None, staleness: float, task_id: str, now: float) -> None:
    """The pure decision behind `TaskStatusWatcher.check`, at `now` (unix seconds).

    Raises `Refusal` status_unavailable without a snapshot, status_stale when its `as_of` is
    older than `staleness` seconds, task_closed when it lists `task_id`.
    """
    if snapshot is None:
        raise Refusal.status_unavailable()
    # A snapshot from the future (clock skew between agent and verifier) counts as age zero.
    age_ms = max(0, int(now * 1000) - max(0, snapshot.as_of_unix_ms))
    bound_ms = int(staleness * 1000)
    if age_ms > bound_ms:
        raise Refusal.status_stale(age_ms, bound_ms)
    if task_id in snapshot.closed_task_ids:
        raise Refusal.task_closed(task_id)


class TaskStatusWatcher:
    """A live subscription to the agent's task-status feed, in a daemon thread.

    Until the first snapshot arrives every check fails closed. `close()` (or leaving a `with`
    block) stops the thread.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        staleness: float = DEFAULT_STALENESS,
        initial_backoff: float = 0.1,
        max_backoff: float = 2.0,
    ) -> None:
        self.target = grpc_target(endpoint)
        self.staleness = staleness
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._latest: Snapshot | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(
            target=self._follow, name="mandate-task-status", daemon=True
        )
        self._thread.start()

    def latest(self) -> Snapshot | None:
        """The newest snapshot, if any arrived."""
        return self._latest

    def wait_ready(self, timeout: float) -> bool:
        """Waits until a snapshot has arrived, or `timeout` seconds; returns whether one did."""
        return self._ready.wait(timeout)

    def check(self, task_id: str, now: float | None = None) -> None:
        """Checks that `task_id` is not closed and the view is fresh; raises `Refusal`."""
        check_snapshot(self._latest, self.staleness, task_id, time.time() if now is None else now)

    def close(self) -> None:
        """Stops following the feed."""
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=5)

    def __enter__(self) -> TaskStatusWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _follow(self) -> None:
        backoff = self._initial_backoff
        while not self._stop.is_set():
            try:
                received = self._stream_once()
                if received:
                    backoff = self._initial_backoff
                _log.debug("task-status stream ended; reconnecting")
            except grpc.RpcError as error:
                _log.debug("task-status feed unavailable (%s); reconnecting", error.code())
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)

    def _stream_once(self) -> bool:
        received = False
        with grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = taskstatus_pb2_grpc.TaskStatusStub(channel)
            call = stub.Watch(taskstatus_pb2.WatchRequest(), metadata=WORKLOAD_HEADER)
            with self._lock:
                if self._stop.is_set():
                    call.cancel()
                    return False
                self._call = call
            try:
                for wire in call:
                    self._latest = Snapshot(
                        closed_task_ids=frozenset(wire.closed_task_ids),
                        sequence=wire.sequence,
                        as_of_unix_ms=wire.as_of_unix_ms,
                    )
                    received = True
                    self._ready.set()
            except grpc.RpcError:
                if self._stop.is_set() or received:
                    return received
                raise
            finally:
                with self._lock:
                    self._call = None
        return received
