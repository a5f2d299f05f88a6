"""The typed refusal: which rule refused a caller or a request, with the stable snake_case
code of docs/DELEGATION.md section 5 (the same codes the Rust and Go verifiers return).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Refusal", "CODES"]

#: Every code, in the order DELEGATION.md section 5 checks them (handshake codes first).
CODES = (
    "no_peer_certificate",
    "no_spiffe_id",
    "delegation_malformed",
    "delegation_required",
    "status_unavailable",
    "status_stale",
    "task_closed",
    "certificate_revoked",
    "deadline_passed",
    "depth_exceeded",
    "chain_too_long",
    "action_not_granted",
    "no_value_limit",
    "currency_mismatch",
    "over_value_limit",
)


class Refusal(Exception):
    """Why a caller or a request was refused: `code` names the rule, `str()` explains it."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """`{"refused": code, "reason": message}`, as the Rust `Refusal::to_json`."""
        return {"refused": self.code, "reason": self.message}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refusal) and (self.code, self.message) == (
            other.code,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, {self.message!r})"

    # Constructors with the Rust verifier's messages.

    @classmethod
    def no_peer_certificate(cls) -> Refusal:
        return cls("no_peer_certificate", "the peer presented no client certificate")

    @classmethod
    def no_spiffe_id(cls, why: str) -> Refusal:
        return cls("no_spiffe_id", f"the peer certificate carries no valid SPIFFE ID: {why}")

    @classmethod
    def delegation_required(cls, spiffe_id: str) -> Refusal:
        return cls("delegation_required", f"{spiffe_id} must carry a delegation and carries none")

    @classmethod
    def delegation_malformed(cls, why: str) -> Refusal:
        return cls("delegation_malformed", f"the delegation extension does not parse: {why}")

    @classmethod
    def status_unavailable(cls) -> Refusal:
        return cls("status_unavailable", "task status unavailable: no snapshot from the agent yet")

    @classmethod
    def status_stale(cls, age_ms: int, bound_ms: int) -> Refusal:
        return cls(
            "status_stale",
            f"task status is stale: newest snapshot is {age_ms} ms old (bound {bound_ms} ms)",
        )

    @classmethod
    def task_closed(cls, task_id: str) -> Refusal:
        return cls("task_closed", f"task {task_id} is closed")

    @classmethod
    def certificate_revoked(cls, serial: int) -> Refusal:
        return cls(
            "certificate_revoked",
            f"certificate serial {serial:x} is listed in a CRL of the trust domain",
        )

    @classmethod
    def deadline_passed(cls, task_id: str, deadline_unix: int) -> Refusal:
        return cls(
            "deadline_passed", f"task {task_id} passed its deadline at unix time {deadline_unix}"
        )

    @classmethod
    def depth_exceeded(cls, depth: int, max_depth: int) -> Refusal:
        return cls("depth_exceeded", f"delegation depth {depth} exceeds the maximum {max_depth}")

    @classmethod
    def chain_too_long(cls, links: int, most: int) -> Refusal:
        return cls(
            "chain_too_long", f"delegation chain has {links} links, at most {most} are allowed"
        )

    @classmethod
    def action_not_granted(cls, action: str, task_id: str) -> Refusal:
        return cls(
            "action_not_granted", f"action {_quoted(action)} is not granted by task {task_id}"
        )

    @classmethod
    def no_value_limit(cls, amount: str, task_id: str) -> Refusal:
        return cls(
            "no_value_limit",
            f"an amount of {amount} was requested but task {task_id} has no value limit",
        )

    @classmethod
    def currency_mismatch(cls, requested: str, limit: str) -> Refusal:
        return cls(
            "currency_mismatch",
            f"amount currency {requested} differs from the value limit currency {limit}",
        )

    @classmethod
    def over_value_limit(cls, amount: str, limit: str) -> Refusal:
        return cls("over_value_limit", f"amount {amount} exceeds the value limit {limit}")


def _quoted(text: str) -> str:
    """Rust's `{:?}` of a string, for the common cases: double quotes, escaped `"` and `\\`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
