"""A stand-in for the agent's unix socket in tests: a real grpc server serving TaskStatus,
Delegation and FetchX509SVID with whatever the test feeds it, and refusing calls without the
`workload.spiffe.io: true` header as the agent does."""

from __future__ import annotations

import queue
from concurrent import futures

import grpc
from spiffe._proto import workload_pb2, workload_pb2_grpc

from mandate_verify._proto import (
    delegation_pb2,
    delegation_pb2_grpc,
    taskstatus_pb2,
    taskstatus_pb2_grpc,
)


def _has_header(context: grpc.ServicerContext) -> bool:
    return ("workload.spiffe.io", "true") in tuple(context.invocation_metadata())


class _Streams:
    """Messages a test pushes to every open stream of one kind (None ends the streams)."""

    def __init__(self) -> None:
        self.queues: list[queue.Queue] = []

    def push(self, message) -> None:
        for q in list(self.queues):
            q.put(message)

    def serve(self, context: grpc.ServicerContext, first=None):
        q: queue.Queue = queue.Queue()
        if first is not None:
            q.put(first)
        self.queues.append(q)
        try:
            while context.is_active():
                try:
                    message = q.get(timeout=0.05)
                except queue.Empty:
                    continue
                if message is None:
                    return
                yield message
        finally:
            self.queues.remove(q)


class FakeAgent(
    taskstatus_pb2_grpc.TaskStatusServicer,
    delegation_pb2_grpc.DelegationServicer,
    workload_pb2_grpc.SpiffeWorkloadAPIServicer,
):
    """Serves on `unix:<path>` until `stop()`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.status = _Streams()
        self.x509 = _Streams()
        self.first_status: taskstatus_pb2.TaskStatusSnapshot | None = None
        self.first_x509: workload_pb2.X509SVIDResponse | None = None
        self.requests: list = []
        self.refuse_subtask: str | None = None
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        taskstatus_pb2_grpc.add_TaskStatusServicer_to_server(self, self.server)
        delegation_pb2_grpc.add_DelegationServicer_to_server(self, self.server)
        workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix:{path}")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"unix://{self.path}"

    def stop(self) -> None:
        self.status.push(None)
        self.x509.push(None)
        self.server.stop(grace=None).wait()

    def Watch(self, request, context):  # noqa: N802 (grpc's name)
        if not _has_header(context):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing the security header")
        yield from self.status.serve(context, self.first_status)

    def FetchX509SVID(self, request, context):  # noqa: N802
        if not _has_header(context):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing the security header")
        yield from self.x509.serve(context, self.first_x509)

    def OpenSubtask(self, request, context):  # noqa: N802
        return self._subtask(request, context)

    def CloseSubtask(self, request, context):  # noqa: N802
        return self._subtask(request, context)

    def _subtask(self, request, context):
        if not _has_header(context):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing the security header")
        self.requests.append(request)
        if self.refuse_subtask:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, self.refuse_subtask)
        task_id = getattr(request, "task_id", "") or "task-sub-1"
        return delegation_pb2.Subtask(
            task_id=task_id, parent_id="task-4711", deadline_unix=1_800_000_000, depth=1
        )
