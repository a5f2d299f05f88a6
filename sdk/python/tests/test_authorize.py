"""`Verifier.authorize`: a table of every refusal of DELEGATION.md section 5 in its order, the
handshake refusals from real certificates, and the delegation policy's prefixes."""

from __future__ import annotations

import copy
import time

import pytest
from spiffe import SpiffeId

from mandate_verify import (
    CallerIdentity,
    DelegationPolicy,
    Link,
    Principal,
    Refusal,
    ValueLimit,
    Verifier,
)
from mandate_verify.revocation import RevokedSerials
from mandate_verify.status import Snapshot, check_snapshot

from conftest import sample
from certs import Authority, der

NOW = 1_800_000_000.0
AGENT = SpiffeId("spiffe://example.org/ai/procurement")


class FixedStatus:
    """A task-status view holding one snapshot (or none)."""

    def __init__(self, snapshot: Snapshot | None, staleness: float = 15.0) -> None:
        self.snapshot, self.staleness = snapshot, staleness

    def check(self, task_id: str, now: float | None = None) -> None:
        check_snapshot(self.snapshot, self.staleness, task_id, NOW if now is None else now)


def fresh(*closed: str) -> Snapshot:
    return Snapshot(frozenset(closed), 1, int(NOW * 1000) - 500)


def with_depth(delegation, depth: int):
    """A delegation deeper than its max depth, which no decoder would yield (defence in depth)."""
    task = copy.copy(delegation.task)
    object.__setattr__(task, "depth", depth)
    out = copy.copy(delegation)
    object.__setattr__(out, "task", task)
    return out


def with_chain(delegation, links: int):
    """A delegation with a chain over 8, which no decoder would yield (defence in depth)."""
    link = Link(Principal.parse("user:carol"), "t-0", "spiffe://example.org/ai/planner")
    out = copy.copy(delegation)
    object.__setattr__(out, "chain", (link,) * links)
    return out


GOOD = sample(deadline=NOW + 3600)
NO_LIMIT = sample(deadline=NOW + 3600, value_limit=None)
EUR = ValueLimit.parse

# (name, delegation, snapshot, action, amount, expected code or None)
TABLE = [
    ("allowed", GOOD, fresh(), "po.draft", EUR("120.00:EUR"), None),
    ("allowed at the limit", GOOD, fresh(), "po.draft", EUR("500.00:EUR"), None),
    ("allowed without amount", GOOD, fresh(), "po.read", None, None),
    ("no snapshot", GOOD, None, "po.draft", None, "status_unavailable"),
    (
        "stale snapshot",
        GOOD,
        Snapshot(frozenset(), 1, int(NOW * 1000) - 15_001),
        "po.draft",
        None,
        "status_stale",
    ),
    (
        "stale beats closed",
        GOOD,
        Snapshot(frozenset({"task-4711"}), 1, 0),
        "po.draft",
        None,
        "status_stale",
    ),
    ("task closed", GOOD, fresh("task-4711"), "po.draft", None, "task_closed"),
    (
        "closed beats deadline",
        sample(deadline=NOW - 1),
        fresh("task-4711"),
        "po.draft",
        None,
        "task_closed",
    ),
    ("deadline passed", sample(deadline=NOW - 1), fresh(), "po.draft", None, "deadline_passed"),
    ("deadline is exclusive", sample(deadline=NOW), fresh(), "po.draft", None, "deadline_passed"),
    (
        "deadline beats depth",
        with_depth(sample(deadline=NOW - 1), 1),
        fresh(),
        "po.draft",
        None,
        "deadline_passed",
    ),
    ("depth exceeded", with_depth(GOOD, 1), fresh(), "po.draft", None, "depth_exceeded"),
    ("depth beats action", with_depth(GOOD, 1), fresh(), "po.approve", None, "depth_exceeded"),
    (
        "depth beats chain",
        with_chain(with_depth(GOOD, 1), 9),
        fresh(),
        "po.draft",
        None,
        "depth_exceeded",
    ),
    ("chain too long", with_chain(GOOD, 9), fresh(), "po.draft", None, "chain_too_long"),
    ("chain of 8 is fine", with_chain(GOOD, 8), fresh(), "po.draft", None, None),
    ("chain beats action", with_chain(GOOD, 9), fresh(), "po.approve", None, "chain_too_long"),
    ("action not granted", GOOD, fresh(), "po.approve", None, "action_not_granted"),
    ("action is exact", GOOD, fresh(), "PO.DRAFT", None, "action_not_granted"),
    ("action beats amount", GOOD, fresh(), "po.approve", EUR("900.00:USD"), "action_not_granted"),
    ("no value limit", NO_LIMIT, fresh(), "po.draft", EUR("1.00:EUR"), "no_value_limit"),
    ("currency mismatch", GOOD, fresh(), "po.draft", EUR("1.00:USD"), "currency_mismatch"),
    ("currency beats amount", GOOD, fresh(), "po.draft", EUR("900.00:USD"), "currency_mismatch"),
    ("over value limit", GOOD, fresh(), "po.draft", EUR("500.01:EUR"), "over_value_limit"),
]


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_refusal_table(row) -> None:
    _, delegation, snapshot, action, amount, expected = row
    verifier = Verifier(DelegationPolicy.require_under("/ai"), FixedStatus(snapshot))
    caller = CallerIdentity(AGENT, delegation)
    if expected is None:
        assert verifier.authorize(caller, action, amount, now=NOW) == delegation
        return
    with pytest.raises(Refusal) as refused:
        verifier.authorize(caller, action, amount, now=NOW)
    assert refused.value.code == expected
    assert refused.value.to_json() == {"refused": expected, "reason": str(refused.value)}


def test_refusal_messages_match_the_rust_verifier() -> None:
    verifier = Verifier(DelegationPolicy(), FixedStatus(fresh()))
    caller = CallerIdentity(AGENT, GOOD)
    with pytest.raises(Refusal) as refused:
        verifier.authorize(caller, "po.draft", EUR("500.01:EUR"), now=NOW)
    assert str(refused.value) == "amount 500.01:EUR exceeds the value limit 500.00:EUR"
    with pytest.raises(Refusal) as refused:
        verifier.authorize(caller, "po.approve", None, now=NOW)
    assert str(refused.value) == 'action "po.approve" is not granted by task task-4711'


def test_callers_without_delegation() -> None:
    verifier = Verifier(DelegationPolicy.require_under("/ai/"), FixedStatus(None))
    service = CallerIdentity(SpiffeId("spiffe://example.org/billing"), None)
    assert verifier.authorize(service, "po.draft", None, now=NOW) is None
    with pytest.raises(Refusal) as refused:
        verifier.authorize(CallerIdentity(AGENT, None), "po.draft", None, now=NOW)
    assert refused.value.code == "delegation_required"


def test_policy_prefixes_match_whole_segments() -> None:
    policy = DelegationPolicy.require_under("/ai/", "/agents/procurement")
    for text, expected in [
        ("spiffe://example.org/ai", True),
        ("spiffe://example.org/ai/procurement", True),
        ("spiffe://example.org/aid", False),
        ("spiffe://example.org/agents/procurement/x", True),
        ("spiffe://example.org/agents/procure", False),
        ("spiffe://example.org/po-service", False),
    ]:
        assert policy.requires_delegation(SpiffeId(text)) is expected, text
    assert not DelegationPolicy().requires_delegation(AGENT)


def test_handshake_refusals_from_certificates() -> None:
    ca = Authority()
    policy = DelegationPolicy.require_under("/ai")
    good = ca.leaf("spiffe://example.org/ai/procurement", GOOD.to_der())
    caller = CallerIdentity.from_certificate(der(good), policy)
    assert caller.delegation == GOOD and str(caller.spiffe_id) == str(AGENT)

    def code(cert_der) -> str:
        with pytest.raises(Refusal) as refused:
            CallerIdentity.from_certificate(cert_der, policy)
        return refused.value.code

    assert code(der(ca.leaf("spiffe://example.org/ai/procurement"))) == "delegation_required"
    assert code(der(ca.leaf(None))) == "no_spiffe_id"
    assert code(der(ca.leaf("https://example.org/x"))) == "no_spiffe_id"
    assert (
        code(der(ca.leaf(["spiffe://example.org/a", "spiffe://example.org/b"]))) == "no_spiffe_id"
    )
    assert code(None) == "no_peer_certificate"
    # A delegation that does not parse is refused whatever the policy says.
    for uri in ("spiffe://example.org/ai/procurement", "spiffe://example.org/billing"):
        garbage = ca.leaf(uri, bytes([0x30, 0x03, 0x02, 0x01, 0x07]))
        assert code(der(garbage)) == "delegation_malformed"
    critical = ca.leaf(uri, GOOD.to_der(), critical=True)
    assert code(der(critical)) == "delegation_malformed"
    billing = CallerIdentity.from_certificate(der(ca.leaf("spiffe://example.org/billing")), policy)
    assert billing.delegation is None


def test_a_revoked_certificate_is_refused_after_the_status_rules() -> None:
    ca = Authority()
    leaf = ca.leaf("spiffe://example.org/ai/procurement", GOOD.to_der())
    caller = CallerIdentity.from_certificate(der(leaf), DelegationPolicy())
    revoked = RevokedSerials({leaf.issuer.public_bytes(): frozenset({leaf.serial_number})})
    verifier = Verifier(DelegationPolicy(), FixedStatus(fresh()), revoked)
    with pytest.raises(Refusal) as refused:
        verifier.authorize(caller, "po.draft", None, now=NOW)
    assert refused.value.code == "certificate_revoked"
    closed = Verifier(DelegationPolicy(), FixedStatus(fresh("task-4711")), revoked)
    with pytest.raises(Refusal) as refused:
        closed.authorize(caller, "po.draft", None, now=NOW)
    assert refused.value.code == "task_closed"
    assert (
        Verifier(DelegationPolicy(), FixedStatus(fresh()), RevokedSerials()).authorize(
            caller, "po.draft", None, now=NOW
        )
        == GOOD
    )


def test_the_wall_clock_is_the_default_now() -> None:
    snapshot = Snapshot(frozenset(), 1, int(time.time() * 1000))
    verifier = Verifier(DelegationPolicy(), FixedStatus(snapshot))
    assert verifier.authorize(CallerIdentity(AGENT, sample()), "po.read") is not None
