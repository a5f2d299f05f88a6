"""The task-status watcher against a real grpc server on a unix socket: fail closed before the
first snapshot, staleness counted from `as_of`, the closed set, the header, reconnection."""

from __future__ import annotations

import time

import pytest

from mandate_verify import Refusal, TaskStatusWatcher
from mandate_verify._proto.taskstatus_pb2 import TaskStatusSnapshot
from mandate_verify.status import Snapshot, check_snapshot, socket_path_from_endpoint

from fake_agent import FakeAgent


def now_ms() -> int:
    return int(time.time() * 1000)


def code(watcher: TaskStatusWatcher, task: str = "task-1") -> str | None:
    try:
        watcher.check(task)
    except Refusal as refusal:
        return refusal.code
    return None


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def agent(tmp_path):
    fake = FakeAgent(str(tmp_path / "api.sock"))
    yield fake
    fake.stop()


def test_pure_decision_with_fixed_times() -> None:
    snap = Snapshot(frozenset({"closed"}), 3, 1_000_000)
    assert check_snapshot(snap, 15, "open", 1_000.0 + 15) is None
    with pytest.raises(Refusal, match=r"1500[12] ms old \(bound 15000 ms\)") as refused:
        check_snapshot(snap, 15, "open", 1_000.0 + 15.002)
    assert refused.value.code == "status_stale"
    assert "15000" in str(refused.value)
    # A snapshot from the future counts as age zero.
    check_snapshot(snap, 15, "open", 900.0)
    with pytest.raises(Refusal) as refused:
        check_snapshot(None, 15, "open", 1_000.0)
    assert refused.value.code == "status_unavailable"
    # A negative as_of is as old as the epoch.
    with pytest.raises(Refusal):
        check_snapshot(Snapshot(frozenset(), 1, -5), 15, "open", 1_000.0)


def test_endpoints() -> None:
    assert socket_path_from_endpoint("unix:///run/a.sock") == "/run/a.sock"
    assert socket_path_from_endpoint("unix:/run/a.sock") == "/run/a.sock"
    assert socket_path_from_endpoint("/run/a.sock") == "/run/a.sock"
    with pytest.raises(ValueError):
        socket_path_from_endpoint("tcp://127.0.0.1:1")


def test_fails_closed_until_the_first_snapshot(tmp_path) -> None:
    with TaskStatusWatcher(f"unix://{tmp_path}/nobody.sock") as watcher:
        assert not watcher.wait_ready(0.3)
        assert code(watcher) == "status_unavailable"


def test_snapshots_closed_set_and_staleness_from_as_of(agent: FakeAgent) -> None:
    agent.first_status = TaskStatusSnapshot(
        closed_task_ids=["task-2"], sequence=1, as_of_unix_ms=now_ms()
    )
    with TaskStatusWatcher(agent.endpoint, staleness=0.5) as watcher:
        assert watcher.wait_ready(5), "the watcher sent the header and got a snapshot"
        assert code(watcher, "task-1") is None
        assert code(watcher, "task-2") == "task_closed"
        agent.status.push(
            TaskStatusSnapshot(closed_task_ids=["task-1"], sequence=2, as_of_unix_ms=now_ms())
        )
        assert wait_for(lambda: code(watcher, "task-1") == "task_closed")
        assert code(watcher, "task-2") is None
        # No heartbeat: the view goes stale by itself, counted from as_of.
        assert wait_for(lambda: code(watcher, "task-3") == "status_stale", timeout=2)
        # A snapshot that arrives now but says the agent last heard from the server long ago.
        agent.status.push(TaskStatusSnapshot(sequence=3, as_of_unix_ms=now_ms() - 60_000))
        assert wait_for(lambda: watcher.latest().sequence == 3)
        assert code(watcher, "task-3") == "status_stale"
        agent.status.push(TaskStatusSnapshot(sequence=4, as_of_unix_ms=now_ms()))
        assert wait_for(lambda: code(watcher, "task-3") is None)


def test_reconnects_after_the_agent_restarts(tmp_path) -> None:
    path = str(tmp_path / "api.sock")
    first = FakeAgent(path)
    first.first_status = TaskStatusSnapshot(sequence=1, as_of_unix_ms=now_ms())
    with TaskStatusWatcher(f"unix://{path}", staleness=1.0, max_backoff=0.2) as watcher:
        assert watcher.wait_ready(5)
        first.stop()
        assert wait_for(
            lambda: code(watcher) == "status_stale", timeout=3
        ), "fails closed without the agent"
        second = FakeAgent(path)
        try:
            second.first_status = TaskStatusSnapshot(
                closed_task_ids=["task-1"], sequence=7, as_of_unix_ms=now_ms()
            )
            assert wait_for(lambda: code(watcher) == "task_closed", timeout=5)
            assert watcher.latest().sequence == 7
        finally:
            second.stop()


def test_a_closed_set_over_grpc_default_4_mib_arrives(agent: FakeAgent) -> None:
    closed = [f"task-{i:032x}" for i in range(120_000)]  # about 4.8 MB on the wire
    agent.first_status = TaskStatusSnapshot(
        closed_task_ids=closed, sequence=1, as_of_unix_ms=now_ms()
    )
    assert agent.first_status.ByteSize() > 4 * 1024 * 1024
    with TaskStatusWatcher(agent.endpoint) as watcher:
        assert watcher.wait_ready(10)
        assert code(watcher, closed[-1]) == "task_closed"
        assert code(watcher, "task-open") is None
