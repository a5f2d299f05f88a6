"""The JWT `delegation` claim: the golden claim of core/tests/data/README.md, round trips,
and claims of the wrong shape."""

from __future__ import annotations

import copy
import json

import pytest

from mandate_verify import Delegation, DelegationError

from conftest import golden

GOLDEN_CLAIM = json.loads("""{"principal":{"kind":"user","id":"alice@example.org"},
 "task":{"id":"task-golden-1","purpose":"draft purchase orders for office supplies",
         "deadline":1796126400,"depth":1,"max_depth":2},
 "actions":["po.draft","po.submit"],
 "value_limit":{"amount_minor":50000,"currency":"EUR"},
 "approval":{"approver":"bob@example.org","approved_at":1795339800},
 "chain":[{"principal":{"kind":"application","id":"procurement-portal"},
           "task_id":"task-parent-0","actor":"spiffe://example.org/agents/planner"}]}""")


def test_golden_claim_parses_to_the_golden_value() -> None:
    assert Delegation.from_claim(GOLDEN_CLAIM) == golden()
    assert golden().to_claim() == GOLDEN_CLAIM


def test_optional_members_are_omitted_and_accepted_absent_or_null() -> None:
    minimal = copy.deepcopy(GOLDEN_CLAIM)
    for key in ("value_limit", "approval", "chain"):
        del minimal[key]
    parsed = Delegation.from_claim(minimal)
    assert parsed.value_limit is None and parsed.approval is None and parsed.chain == ()
    assert parsed.to_claim() == minimal
    with_nulls = dict(minimal, value_limit=None, approval=None)
    assert Delegation.from_claim(with_nulls) == parsed
    assert Delegation.from_claim(dict(minimal, extra="ignored")) == parsed


def changed(path: str, value: object) -> dict:
    claim = copy.deepcopy(GOLDEN_CLAIM)
    *parents, last = path.split(".")
    node = claim
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return claim


BAD_CLAIMS = {
    "not an object": [],
    "principal kind app": changed("principal.kind", "app"),
    "principal kind missing": changed("principal.kind", KeyError),
    "empty principal id": changed("principal.id", ""),
    "workload principal that is no SPIFFE ID": changed(
        "principal", {"kind": "workload", "id": "x"}
    ),
    "task missing": changed("task", KeyError),
    "deadline as a string": changed("task.deadline", "1796126400"),
    "deadline as a float": changed("task.deadline", 1796126400.0),
    "depth as a boolean": changed("task.depth", True),
    "depth 256": changed("task.depth", 256),
    "negative max depth": changed("task.max_depth", -1),
    "depth over max depth": changed("task.depth", 3),
    "task id with a slash": changed("task.id", "a/b"),
    "purpose of 257 bytes": changed("task.purpose", "p" * 257),
    "actions not an array": changed("actions", "po.draft"),
    "65 actions": changed("actions", [f"a{i}" for i in range(65)]),
    "action with whitespace": changed("actions", ["po draft"]),
    "action not a string": changed("actions", [1]),
    "lower-case currency": changed("value_limit.currency", "eur"),
    "amount as a string": changed("value_limit.amount_minor", "50000"),
    "amount over 64 bits": changed("value_limit.amount_minor", 2**63),
    "approval without approver": changed("approval.approver", KeyError),
    "chain null": changed("chain", None),
    "chain of 9 links": changed("chain", GOLDEN_CLAIM["chain"] * 9),
    "chain actor not ASCII": changed("chain.0.actor", "café"),
    "chain task id empty": changed("chain.0.task_id", ""),
}


@pytest.mark.parametrize("name", sorted(BAD_CLAIMS))
def test_bad_claim_is_refused(name: str) -> None:
    with pytest.raises(DelegationError):
        Delegation.from_claim(BAD_CLAIMS[name])


def test_claim_deadline_equals_the_der_generalized_time() -> None:
    der_value = Delegation.from_der(golden().to_der())
    assert der_value.to_claim()["task"]["deadline"] == 1_796_126_400


def test_a_validated_jwt_svid_yields_the_caller_and_its_delegation() -> None:
    import time as _time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from spiffe import JwtBundle, JwtSvid, TrustDomain

    from mandate_verify import CallerIdentity, DelegationPolicy, Refusal

    key = ec.generate_private_key(ec.SECP256R1())
    bundle = JwtBundle(TrustDomain("example.org"), {"k1": key.public_key()})
    policy = DelegationPolicy.require_under("/ai")

    def token(sub: str, delegation: object) -> JwtSvid:
        claims = {"sub": sub, "aud": ["po-service"], "exp": int(_time.time()) + 300}
        if delegation is not None:
            claims["delegation"] = delegation
        text = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1", "typ": "JWT"})
        return JwtSvid.parse_and_validate(text, bundle, {"po-service"})

    caller = CallerIdentity.from_jwt_svid(
        token("spiffe://example.org/ai/procurement", GOLDEN_CLAIM), policy
    )
    assert caller.delegation == golden() and caller.certificate is None
    with pytest.raises(Refusal) as refused:
        CallerIdentity.from_jwt_svid(token("spiffe://example.org/ai/procurement", None), policy)
    assert refused.value.code == "delegation_required"
    with pytest.raises(Refusal) as refused:
        CallerIdentity.from_jwt_svid(
            token("spiffe://example.org/billing", {"principal": 1}), policy
        )
    assert refused.value.code == "delegation_malformed"
    assert (
        CallerIdentity.from_jwt_svid(token("spiffe://example.org/billing", None), policy).delegation
        is None
    )
