"""The JWT `delegation` claim (DESIGN 3.3 and 3.7): the DER structure mirrored in snake_case
JSON, times as unix seconds, optional members omitted when absent. Parsing is as strict about
types as the Rust `serde` structs: integers are integers (not floats, not booleans), strings are
strings, and unknown members are ignored.
"""

from __future__ import annotations

from typing import Any, Mapping

from .delegation import Delegation
from .model import (
    MAX_ACTIONS,
    MAX_CHAIN,
    Approval,
    DelegationError,
    Link,
    Principal,
    PrincipalKind,
    TaskInfo,
    ValueLimit,
)

__all__ = ["delegation_from_claim", "delegation_to_claim"]

_I64 = (-(2**63), 2**63 - 1)


def delegation_to_claim(d: Delegation) -> dict[str, Any]:
    """The claim of `d` as a JSON-ready dict."""
    claim: dict[str, Any] = {
        "principal": _principal_json(d.principal),
        "task": {
            "id": d.task.id,
            "purpose": d.task.purpose,
            "deadline": d.task.deadline,
            "depth": d.task.depth,
            "max_depth": d.task.max_depth,
        },
        "actions": list(d.actions),
    }
    if d.value_limit is not None:
        claim["value_limit"] = {
            "amount_minor": d.value_limit.amount_minor,
            "currency": d.value_limit.currency,
        }
    if d.approval is not None:
        claim["approval"] = {
            "approver": d.approval.approver,
            "approved_at": d.approval.approved_at,
        }
    if d.chain:
        claim["chain"] = [
            {"principal": _principal_json(l.principal), "task_id": l.task_id, "actor": l.actor}
            for l in d.chain
        ]
    return claim


def delegation_from_claim(claim: Any) -> Delegation:
    """Parses a decoded JSON `delegation` claim; raises `DelegationError` when it is wrong."""
    c = _object(claim, "delegation")
    task = _object(_member(c, "task"), "task")
    actions = _list(_member(c, "actions"), "actions")
    if len(actions) > MAX_ACTIONS:
        raise DelegationError(
            "actions", f"delegation has {len(actions)} actions, at most {MAX_ACTIONS}"
        )
    chain_json = c.get("chain", [])
    chain = _list(chain_json, "chain")
    if len(chain) > MAX_CHAIN:
        raise DelegationError(
            "chain_length", f"delegation chain has {len(chain)} links, at most {MAX_CHAIN}"
        )
    value_limit = None
    if c.get("value_limit") is not None:
        v = _object(c["value_limit"], "value_limit")
        value_limit = ValueLimit(
            _int(_member(v, "amount_minor"), "value_limit.amount_minor", *_I64),
            _str(_member(v, "currency"), "value_limit.currency"),
        )
    approval = None
    if c.get("approval") is not None:
        a = _object(c["approval"], "approval")
        approval = Approval(
            _str(_member(a, "approver"), "approval.approver"),
            _int(_member(a, "approved_at"), "approval.approved_at", *_I64),
        )
    return Delegation(
        principal=_principal(_member(c, "principal"), "principal"),
        task=TaskInfo(
            id=_str(_member(task, "id"), "task.id"),
            purpose=_str(_member(task, "purpose"), "task.purpose"),
            deadline=_int(_member(task, "deadline"), "task.deadline", *_I64),
            depth=_int(_member(task, "depth"), "task.depth", 0, 255),
            max_depth=_int(_member(task, "max_depth"), "task.max_depth", 0, 255),
        ),
        actions=tuple(_str(a, "actions[]") for a in actions),
        value_limit=value_limit,
        approval=approval,
        chain=tuple(
            Link(
                principal=_principal(_member(link, "principal"), "chain[].principal"),
                task_id=_str(_member(link, "task_id"), "chain[].task_id"),
                actor=_str(_member(link, "actor"), "chain[].actor"),
            )
            for link in (_object(l, "chain[]") for l in chain)
        ),
    )


def _principal_json(p: Principal) -> dict[str, str]:
    return {"kind": p.kind.value, "id": p.id}


def _principal(value: Any, what: str) -> Principal:
    p = _object(value, what)
    kind = _str(_member(p, "kind"), f"{what}.kind")
    try:
        parsed = PrincipalKind(kind)
    except ValueError:
        raise DelegationError(
            "principal", f"unknown principal kind {kind!r}: expected user, application or workload"
        ) from None
    return Principal(parsed, _str(_member(p, "id"), f"{what}.id"))


def _bad(what: str, expected: str) -> DelegationError:
    return DelegationError("claim", f"malformed delegation claim: {what} is not {expected}")


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(what, "an object")
    return value


def _member(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj:
        raise DelegationError("claim", f"malformed delegation claim: missing field {name!r}")
    return obj[name]


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(what, "an array")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(what, "a string")
    return value


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(what, "an integer")
    if not low <= value <= high:
        raise _bad(what, f"an integer in {low}..{high}")
    return value
