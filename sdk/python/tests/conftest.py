"""Shared test pieces: paths of the workspace's vectors and a sample delegation."""

from __future__ import annotations

import pathlib
import time

import pytest

from mandate_verify import Approval, Delegation, Link, Principal, TaskInfo, ValueLimit

ROOT = pathlib.Path(__file__).resolve().parents[3]
DATA = ROOT / "core" / "tests" / "data"


def golden() -> Delegation:
    """The value of core/tests/data/delegation-golden.der (core/tests/golden.rs)."""
    return Delegation(
        principal=Principal.parse("user:alice@example.org"),
        task=TaskInfo(
            id="task-golden-1",
            purpose="draft purchase orders for office supplies",
            deadline=1_796_126_400,
            depth=1,
            max_depth=2,
        ),
        actions=("po.draft", "po.submit"),
        value_limit=ValueLimit.parse("500.00:EUR"),
        approval=Approval("bob@example.org", 1_795_339_800),
        chain=(
            Link(
                Principal.parse("app:procurement-portal"),
                "task-parent-0",
                "spiffe://example.org/agents/planner",
            ),
        ),
    )


def golden_chain2() -> Delegation:
    """The value of core/tests/data/delegation-golden-chain2.der: a sub-sub-task."""
    alice = Principal.parse("user:alice@example.org")
    return Delegation(
        principal=alice,
        task=TaskInfo("task-fetch-2", "fetch one supplier page", 1_796_122_800, 2, 3),
        actions=("supplier.fetch",),
        value_limit=ValueLimit.parse("5.00:EUR"),
        approval=None,
        chain=(
            Link(alice, "task-root-0", "spiffe://example.org/ai/planner"),
            Link(alice, "task-search-1", "spiffe://example.org/ai/search"),
        ),
    )


def sample(deadline: float | None = None, **changes: object) -> Delegation:
    """A delegation for alice: po.draft and po.read, 500.00 EUR, an hour from now."""
    fields: dict[str, object] = dict(
        principal=Principal.parse("user:alice@example.org"),
        task=TaskInfo(
            "task-4711", "draft purchase order 4711", int(deadline or time.time() + 3600), 0, 0
        ),
        actions=("po.draft", "po.read"),
        value_limit=ValueLimit.parse("500.00:EUR"),
    )
    fields.update(changes)
    return Delegation(**fields)  # type: ignore[arg-type]


@pytest.fixture
def golden_delegation() -> Delegation:
    return golden()
