"""Per-request authorization of a caller (DELEGATION.md section 5): task status, the trust
domain's CRLs, deadline, depth, action and amount, on every request, not only at the handshake.
"""

from __future__ import annotations

import time
from typing import Protocol

from cryptography import x509

from .caller import CallerIdentity, DelegationPolicy
from .delegation import Delegation
from .model import MAX_CHAIN, ValueLimit
from .refusal import Refusal

__all__ = ["Verifier", "check_grant", "StatusView", "RevocationView"]


class StatusView(Protocol):
    """What the verifier needs of the task-status view (`TaskStatusWatcher`)."""

    def check(self, task_id: str, now: float | None = None) -> None:
        """Raises `Refusal` status_unavailable, status_stale or task_closed."""


class RevocationView(Protocol):
    """What the verifier needs of the CRL view (`CrlWatcher`)."""

    def check(self, certificate: x509.Certificate) -> None:
        """Raises `Refusal` certificate_revoked when a CRL lists the certificate."""


class Verifier:
    """The policy, the live task-status view and, optionally, the CRL view of a service."""

    def __init__(
        self,
        policy: DelegationPolicy,
        status: StatusView,
        revocation: RevocationView | None = None,
    ) -> None:
        self.policy = policy
        self.status = status
        self.revocation = revocation

    def caller(self, leaf: x509.Certificate | bytes | None) -> CallerIdentity:
        """The caller of a connection, from its leaf certificate (see `CallerIdentity`)."""
        return CallerIdentity.from_certificate(leaf, self.policy)

    def authorize(
        self,
        caller: CallerIdentity,
        action: str,
        amount: ValueLimit | None = None,
        now: float | None = None,
    ) -> Delegation | None:
        """Checks one request of `caller` for `action` with an optional `amount`, at `now`
        (unix seconds; default the current time).

        Returns the delegation the request runs under, or None for a caller without one that
        policy does not require to carry one (the service applies its own rules to those).
        Raises the `Refusal` of the first rule that fails, in the order of DELEGATION.md 5:
        status_unavailable, status_stale, task_closed, then certificate_revoked (the CRL,
        DESIGN 3.4's second path), deadline_passed, depth_exceeded, chain_too_long,
        action_not_granted,
        no_value_limit, currency_mismatch, over_value_limit.
        """
        now = time.time() if now is None else now
        delegation = caller.delegation
        if delegation is None:
            # Re-checked in case the caller was built by hand rather than from a certificate.
            if self.policy.requires_delegation(caller.spiffe_id):
                raise Refusal.delegation_required(str(caller.spiffe_id))
            self._check_revocation(caller)
            return None
        self.status.check(delegation.task.id, now)
        self._check_revocation(caller)
        check_grant(delegation, action, amount, now)
        return delegation

    def _check_revocation(self, caller: CallerIdentity) -> None:
        if self.revocation is not None and caller.certificate is not None:
            self.revocation.check(caller.certificate)


def check_grant(delegation: Delegation, action: str, amount: ValueLimit | None, now: float) -> None:
    """The pure checks of a grant at `now` (unix seconds): deadline, depth, chain length (the
    decoder already refuses a chain over 8; this guards a hand-built one), action (exact
    match) and amount (a limit exists, same currency, within it). Raises the first `Refusal`.
    """
    task = delegation.task
    if now >= task.deadline:
        raise Refusal.deadline_passed(task.id, task.deadline)
    if task.depth > task.max_depth:
        raise Refusal.depth_exceeded(task.depth, task.max_depth)
    if len(delegation.chain) > MAX_CHAIN:
        raise Refusal.chain_too_long(len(delegation.chain), MAX_CHAIN)
    if not delegation.allows(action):
        raise Refusal.action_not_granted(action, task.id)
    if amount is None:
        return
    limit = delegation.value_limit
    if limit is None:
        raise Refusal.no_value_limit(str(amount), task.id)
    if amount.currency != limit.currency:
        raise Refusal.currency_mismatch(amount.currency, limit.currency)
    if amount.amount_minor > limit.amount_minor:
        raise Refusal.over_value_limit(str(amount), str(limit))
