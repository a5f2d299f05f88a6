"""The Delegation client (DESIGN 3.8) against a grpc server on a unix socket."""

from __future__ import annotations

import grpc
import pytest

from mandate_verify import DelegationClient, Subtask, SubtaskError

from fake_agent import FakeAgent


@pytest.fixture
def agent(tmp_path):
    fake = FakeAgent(str(tmp_path / "api.sock"))
    yield fake
    fake.stop()


def test_open_and_close_send_every_field_with_the_header(agent: FakeAgent) -> None:
    with DelegationClient(agent.endpoint) as client:
        opened = client.open_subtask(
            "spiffe://example.org/ai/search",
            ["po.read"],
            purpose="find suppliers",
            value_limit="50.00:EUR",
            deadline_unix=1_799_999_000,
            delegator_id="spiffe://example.org/ai/procurement",
            delegator_task_id="task-4711",
        )
        assert opened == Subtask("task-sub-1", "task-4711", 1_800_000_000, 1)
        sent = agent.requests[0]
        assert (sent.target_id, list(sent.actions), sent.purpose) == (
            "spiffe://example.org/ai/search",
            ["po.read"],
            "find suppliers",
        )
        assert (
            sent.value_limit,
            sent.deadline_unix,
            sent.delegator_id,
            sent.delegator_task_id,
        ) == ("50.00:EUR", 1_799_999_000, "spiffe://example.org/ai/procurement", "task-4711")
        closed = client.close_subtask("task-sub-1", reason="done")
        assert closed.task_id == "task-sub-1"
        assert (agent.requests[1].task_id, agent.requests[1].reason) == ("task-sub-1", "done")


def test_a_refusal_carries_the_status_and_the_line(agent: FakeAgent) -> None:
    agent.refuse_subtask = "action po.approve is not one of the delegator's actions"
    with DelegationClient(agent.endpoint) as client:
        with pytest.raises(SubtaskError) as refused:
            client.open_subtask("spiffe://example.org/ai/search", ["po.approve"])
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "po.approve" in str(refused.value)


def test_no_agent_is_unavailable(tmp_path) -> None:
    with DelegationClient(f"unix://{tmp_path}/nobody.sock", timeout=1) as client:
        with pytest.raises(SubtaskError) as refused:
            client.close_subtask("task-1")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
