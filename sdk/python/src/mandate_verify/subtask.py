"""A client of `mandate.delegation.v1.Delegation` (DESIGN 3.8): a workload holding a task-bound
SVID opens a narrower sub-task for a delegate workload on its own agent's socket, and closes
the sub-tasks it opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import grpc

from ._proto import delegation_pb2, delegation_pb2_grpc
from .status import WORKLOAD_HEADER, grpc_target

__all__ = ["Subtask", "SubtaskError", "DelegationClient"]


@dataclass(frozen=True)
class Subtask:
    """A sub-task as the server opened (or closed) it."""

    task_id: str
    parent_id: str
    deadline_unix: int
    depth: int


class SubtaskError(Exception):
    """The agent or the server refused the call: `code` is the gRPC status code (for example
    PERMISSION_DENIED naming the rule, INVALID_ARGUMENT listing tasks to choose from)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class DelegationClient:
    """Calls the Delegation service of the local agent (`endpoint`: `unix:///path`, or None
    for `SPIFFE_ENDPOINT_SOCKET`)."""

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(grpc_target(endpoint))
        self._stub = delegation_pb2_grpc.DelegationStub(self._channel)
        self._timeout = timeout

    def open_subtask(
        self,
        target_id: str,
        actions: Iterable[str],
        purpose: str = "",
        value_limit: str = "",
        deadline_unix: int = 0,
        delegator_id: str = "",
        delegator_task_id: str = "",
    ) -> Subtask:
        """Opens a sub-task bound to the delegate entry `target_id`.

        `value_limit` is `<amount>:<CODE>` (empty: the delegator's), `deadline_unix` 0 means
        the delegator's deadline, `delegator_id`/`delegator_task_id` pick the delegating SVID
        and task when the caller holds several. Raises `SubtaskError` when refused.
        """
        request = delegation_pb2.OpenSubtaskRequest(
            delegator_id=delegator_id,
            target_id=target_id,
            purpose=purpose,
            actions=list(actions),
            value_limit=value_limit,
            deadline_unix=deadline_unix,
            delegator_task_id=delegator_task_id,
        )
        return self._call(self._stub.OpenSubtask, request)

    def close_subtask(self, task_id: str, reason: str = "", delegator_id: str = "") -> Subtask:
        """Closes a sub-task this caller opened. Raises `SubtaskError` when refused."""
        request = delegation_pb2.CloseSubtaskRequest(
            delegator_id=delegator_id, task_id=task_id, reason=reason
        )
        return self._call(self._stub.CloseSubtask, request)

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> DelegationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request) -> Subtask:  # type: ignore[no-untyped-def]
        try:
            reply = method(request, metadata=WORKLOAD_HEADER, timeout=self._timeout)
        except grpc.RpcError as error:
            raise SubtaskError(error.code(), error.details() or "") from None
        return Subtask(reply.task_id, reply.parent_id, reply.deadline_unix, reply.depth)
