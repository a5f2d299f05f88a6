"""The delegation an SVID carries (DESIGN 3.3, docs/DELEGATION.md sections 2 and 3): the DER
extension value, decoded strictly and re-encoded to prove it canonical, and the JWT
`delegation` claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from . import _der
from ._der import DerError, Reader
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
    check_action,
)

__all__ = ["DELEGATION_OID", "VERSION", "MAX_DER_LEN", "Delegation"]

#: The delegation extension's OID (a GUID-based arc; `2.25.<uuid>` breaks Go's parser).
DELEGATION_OID = "1.2.840.113556.1.8000.2554.59017.18993.23044.17922.41336.3076546.14707388.1"
#: The only `version` written and accepted.
VERSION = 1
#: Largest DER extension value accepted, in bytes.
MAX_DER_LEN = 64 * 1024

_I64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Delegation:
    """Who an agent acts for, under which task, and what it may do."""

    principal: Principal
    task: TaskInfo
    actions: tuple[str, ...]
    value_limit: ValueLimit | None = None
    approval: Approval | None = None
    chain: tuple[Link, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "chain", tuple(self.chain))
        if len(self.actions) > MAX_ACTIONS:
            raise DelegationError(
                "actions", f"delegation has {len(self.actions)} actions, at most {MAX_ACTIONS}"
            )
        for action in self.actions:
            check_action(action)
        if len(self.chain) > MAX_CHAIN:
            raise DelegationError(
                "chain_length", f"delegation chain has {len(self.chain)} links, at most {MAX_CHAIN}"
            )
        for name in ("depth", "max_depth"):
            value = getattr(self.task, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
                raise DelegationError("der", f"task {name} {value!r} is outside 0..255")
        if self.task.depth > self.task.max_depth:
            raise DelegationError(
                "depth",
                f"delegation depth {self.task.depth} exceeds max depth {self.task.max_depth}",
            )

    def allows(self, action: str) -> bool:
        """True when `action` is granted (exact, byte-for-byte match)."""
        return action in self.actions

    # --- DER -----------------------------------------------------------------------------

    @classmethod
    def from_der(cls, data: bytes) -> Delegation:
        """Decodes a DER extension value. Never raises anything but `DelegationError`.

        Refuses input over 64 KiB, malformed or truncated DER, trailing bytes, a version other
        than 1, values outside the sizes of DESIGN 3.3, and any encoding but the canonical one.
        """
        data = bytes(data)
        if len(data) > MAX_DER_LEN:
            raise DelegationError("too_large", f"delegation is larger than {MAX_DER_LEN} bytes")
        try:
            delegation = _decode(data)
        except DelegationError:
            raise
        except (ValueError, TypeError, OverflowError) as error:  # DerError is a ValueError
            raise DelegationError("der", f"malformed delegation DER: {error}") from None
        # DER has one encoding per value: anything tolerated above re-encodes differently.
        if delegation.to_der() != data:
            raise DelegationError("non_canonical", "delegation DER is not canonical")
        return delegation

    def to_der(self) -> bytes:
        """The DER extension value (DESIGN 3.3, IMPLICIT tags for the optional fields)."""
        body = [
            _der.integer(VERSION),
            _principal_der(self.principal),
            _der.tlv(
                _der.SEQUENCE,
                _utf8(self.task.id)
                + _utf8(self.task.purpose)
                + _time(self.task.deadline)
                + _der.integer(self.task.depth)
                + _der.integer(self.task.max_depth),
            ),
            _der.tlv(_der.SEQUENCE, b"".join(_utf8(a) for a in self.actions)),
        ]
        if self.value_limit is not None:
            limit = self.value_limit
            body.append(
                _der.tlv(
                    _der.CONTEXT_0,
                    _der.integer(limit.amount_minor)
                    + _der.tlv(_der.PRINTABLE_STRING, limit.currency.encode("ascii")),
                )
            )
        if self.approval is not None:
            body.append(
                _der.tlv(
                    _der.CONTEXT_1,
                    _utf8(self.approval.approver) + _time(self.approval.approved_at),
                )
            )
        if self.chain:
            links = b"".join(
                _der.tlv(
                    _der.SEQUENCE,
                    _principal_der(link.principal)
                    + _utf8(link.task_id)
                    + _der.tlv(_der.IA5_STRING, link.actor.encode("ascii")),
                )
                for link in self.chain
            )
            body.append(_der.tlv(_der.CONTEXT_2, links))
        return _der.tlv(_der.SEQUENCE, b"".join(body))

    # --- JWT claim ----------------------------------------------------------------------

    @classmethod
    def from_claim(cls, claim: Any) -> Delegation:
        """Parses a JWT `delegation` claim (a decoded JSON object); raises `DelegationError`."""
        from .claim import delegation_from_claim

        return delegation_from_claim(claim)

    def to_claim(self) -> dict[str, Any]:
        """The JWT `delegation` claim: snake_case, unix seconds, absent members omitted."""
        from .claim import delegation_to_claim

        return delegation_to_claim(self)

    # --- certificates -------------------------------------------------------------------

    @classmethod
    def from_certificate(cls, cert: x509.Certificate | bytes) -> Delegation | None:
        """The delegation of a certificate (DER bytes or parsed), or None when it has none.

        Raises `DelegationError` when the certificate does not parse, carries the extension
        twice or as critical, or its value does not decode.
        """
        if isinstance(cert, (bytes, bytearray, memoryview)):
            try:
                cert = x509.load_der_x509_certificate(bytes(cert))
            except ValueError as error:
                raise DelegationError("certificate", f"cannot parse certificate: {error}") from None
        try:
            extensions = cert.extensions
        except x509.DuplicateExtension:
            raise DelegationError(
                "duplicate_extension", "certificate carries an extension more than once"
            ) from None
        except ValueError as error:
            raise DelegationError("certificate", f"cannot parse extensions: {error}") from None
        found = [e for e in extensions if e.oid.dotted_string == DELEGATION_OID]
        if not found:
            return None
        if len(found) > 1:
            raise DelegationError(
                "duplicate_extension", "certificate carries the delegation extension more than once"
            )
        if found[0].critical:
            raise DelegationError("critical", "delegation extension must not be critical")
        value = found[0].value
        raw = value.value if isinstance(value, x509.UnrecognizedExtension) else None
        if raw is None:
            raise DelegationError("certificate", "delegation extension has no raw value")
        return cls.from_der(raw)


def _utf8(text: str) -> bytes:
    return _der.tlv(_der.UTF8_STRING, text.encode("utf-8"))


def _time(unix_seconds: int) -> bytes:
    try:
        return _der.generalized_time(unix_seconds)
    except DerError:
        raise DelegationError("time", "delegation time is out of range") from None


def _principal_der(p: Principal) -> bytes:
    return _der.tlv(_der.SEQUENCE, _der.integer(p.kind.number, _der.ENUMERATED) + _utf8(p.id))


def _read_principal(reader: Reader, what: str) -> Principal:
    r = Reader(reader.read(_der.SEQUENCE, what))
    kind = PrincipalKind.from_number(r.read_integer(f"{what}.kind", 0, 2**31, _der.ENUMERATED))
    ident = r.read_utf8(f"{what}.id")
    r.finish(what)
    return Principal(kind, ident)


def _decode(data: bytes) -> Delegation:
    outer = Reader(data)
    r = Reader(outer.read(_der.SEQUENCE, "MandateDelegation"))
    outer.finish("MandateDelegation")
    version = r.read_integer("version", 0, 255)
    if version != VERSION:
        raise DelegationError("version", f"unsupported delegation version {version}")
    principal = _read_principal(r, "principal")
    t = Reader(r.read(_der.SEQUENCE, "task"))
    task = TaskInfo(
        id=t.read_utf8("task.id"),
        purpose=t.read_utf8("task.purpose"),
        deadline=t.read_time("task.deadline"),
        depth=t.read_integer("task.depth", 0, 255),
        max_depth=t.read_integer("task.maxDepth", 0, 255),
    )
    t.finish("task")
    a = Reader(r.read(_der.SEQUENCE, "actions"))
    actions = []
    while not a.at_end():
        actions.append(a.read_utf8("action"))
        if len(actions) > MAX_ACTIONS:
            raise DelegationError("actions", f"delegation has more than {MAX_ACTIONS} actions")
    value_limit = approval = None
    chain: list[Link] = []
    if r.peek_tag() == _der.CONTEXT_0:
        v = Reader(r.read(_der.CONTEXT_0, "valueLimit"))
        amount = v.read_integer("valueLimit.amountMinor", *_I64)
        currency = v.read_printable("valueLimit.currency")
        v.finish("valueLimit")
        value_limit = ValueLimit(amount, currency)
    if r.peek_tag() == _der.CONTEXT_1:
        ap = Reader(r.read(_der.CONTEXT_1, "approval"))
        approval = Approval(ap.read_utf8("approval.approver"), ap.read_time("approval.approvedAt"))
        ap.finish("approval")
    if r.peek_tag() == _der.CONTEXT_2:
        c = Reader(r.read(_der.CONTEXT_2, "chain"))
        while not c.at_end():
            link = Reader(c.read(_der.SEQUENCE, "chain link"))
            chain.append(
                Link(
                    principal=_read_principal(link, "link.principal"),
                    task_id=link.read_utf8("link.taskId"),
                    actor=link.read_ia5("link.actor"),
                )
            )
            link.finish("chain link")
            if len(chain) > MAX_CHAIN:
                raise DelegationError(
                    "chain_length", f"delegation chain has more than {MAX_CHAIN} links"
                )
        if not chain:
            raise DelegationError("chain_length", "delegation chain is present but empty")
    r.finish("MandateDelegation (unknown or misordered field)")
    return Delegation(principal, task, tuple(actions), value_limit, approval, tuple(chain))
