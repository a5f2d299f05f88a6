"""The values a delegation is made of, each checked when built, with the rules of DESIGN 3.3
and 3.7 exactly as the Rust core applies them (`core/src/principal.rs`, `ids.rs`, `task/`).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from spiffe import SpiffeId
from spiffe.errors import PySpiffeError

__all__ = [
    "DelegationError",
    "PrincipalKind",
    "Principal",
    "ValueLimit",
    "Approval",
    "Link",
    "TaskInfo",
    "check_task_id",
    "check_action",
    "parse_spiffe_id",
    "MAX_PRINCIPAL_ID_LEN",
    "MAX_PURPOSE_LEN",
    "MAX_ACTIONS",
    "MAX_ACTION_LEN",
    "MAX_CHAIN",
    "MAX_ID_LEN",
    "MAX_SPIFFE_ID_LEN",
]

MAX_PRINCIPAL_ID_LEN = 256  # bytes
MAX_PURPOSE_LEN = 256  # bytes
MAX_ACTIONS = 64
MAX_ACTION_LEN = 128  # bytes
MAX_CHAIN = 8
MAX_ID_LEN = 64  # characters of a task ID
MAX_SPIFFE_ID_LEN = 2048  # bytes, SPIFFE-ID.md section 2.3

_TASK_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Rust's char::is_whitespace: the Unicode White_Space property.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class DelegationError(ValueError):
    """A delegation (DER, claim or certificate) that Mandate refuses.

    `kind` names the rule: der, non_canonical, too_large, version, actions, chain_length,
    principal, task_id, action, purpose, currency, actor, depth, time, claim, certificate,
    duplicate_extension or critical.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _is_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parses a SPIFFE ID with py-spiffe and the 2048-byte limit it does not check.

    Raises `DelegationError` (kind `principal`) when the text is not a SPIFFE ID.
    """
    if len(text.encode("utf-8")) > MAX_SPIFFE_ID_LEN:
        raise DelegationError("principal", f"SPIFFE ID is longer than {MAX_SPIFFE_ID_LEN} bytes")
    try:
        return SpiffeId(text)
    except (PySpiffeError, ValueError) as error:
        raise DelegationError("principal", f"invalid SPIFFE ID: {error}") from None


def check_task_id(text: str) -> str:
    """Returns `text` when it is a task ID: 1 to 64 of `[A-Za-z0-9._:-]`; raises otherwise."""
    if not isinstance(text, str) or not _TASK_ID.fullmatch(text):
        raise DelegationError("task_id", f"task id {text!r} is not 1 to 64 of [A-Za-z0-9._:-]")
    return text


def check_action(text: str) -> str:
    """Returns `text` when it is an action name (1 to 128 bytes, no whitespace or control)."""
    if (
        not isinstance(text, str)
        or not text
        or len(text.encode("utf-8")) > MAX_ACTION_LEN
        or any(c in _WHITE_SPACE or _is_control(c) for c in text)
    ):
        raise DelegationError("action", f"action {text!r} is empty, too long, or has whitespace")
    return text


class PrincipalKind(enum.Enum):
    """ASN.1 `ENUMERATED { user(0), application(1), workload(2) }`; the value is the JSON name."""

    USER = "user"
    APPLICATION = "application"
    WORKLOAD = "workload"

    @property
    def number(self) -> int:
        """The ENUMERATED value."""
        return _KIND_NUMBERS[self]

    @classmethod
    def from_number(cls, number: int) -> PrincipalKind:
        """The kind of an ENUMERATED value; raises `DelegationError` for an unknown one."""
        for kind, n in _KIND_NUMBERS.items():
            if n == number:
                return kind
        raise DelegationError("der", f"unknown principal kind {number}")


_KIND_NUMBERS = {PrincipalKind.USER: 0, PrincipalKind.APPLICATION: 1, PrincipalKind.WORKLOAD: 2}


@dataclass(frozen=True)
class Principal:
    """Who an agent acts for: `user:<id>`, `app:<id>` or a workload's SPIFFE ID."""

    kind: PrincipalKind
    id: str

    def __post_init__(self) -> None:
        ident = self.id
        if not isinstance(ident, str) or not ident:
            raise DelegationError("principal", "principal id is empty")
        if len(ident.encode("utf-8")) > MAX_PRINCIPAL_ID_LEN:
            raise DelegationError(
                "principal", f"principal id is longer than {MAX_PRINCIPAL_ID_LEN} bytes"
            )
        if any(_is_control(c) for c in ident):
            raise DelegationError("principal", "principal id contains a control character")
        if self.kind is PrincipalKind.WORKLOAD:
            # py-spiffe normalizes (lower-cases the trust domain); keep its form, as Rust does.
            object.__setattr__(self, "id", str(parse_spiffe_id(ident)))

    @classmethod
    def parse(cls, text: str) -> Principal:
        """Parses the text form; raises `DelegationError` for anything else."""
        if text.startswith("user:"):
            return cls(PrincipalKind.USER, text[5:])
        if text.startswith("app:"):
            return cls(PrincipalKind.APPLICATION, text[4:])
        if text.startswith("spiffe://"):
            return cls(PrincipalKind.WORKLOAD, text)
        raise DelegationError(
            "principal", f"principal {text!r} is not user:<id>, app:<id> or a SPIFFE ID"
        )

    def __str__(self) -> str:
        if self.kind is PrincipalKind.USER:
            return f"user:{self.id}"
        if self.kind is PrincipalKind.APPLICATION:
            return f"app:{self.id}"
        return self.id


_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")
_I64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ValueLimit:
    """An amount in hundredths and an ISO 4217 code; also the amount of a request."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise DelegationError("claim", "amount_minor is not an integer")
        if not _I64[0] <= self.amount_minor <= _I64[1]:
            raise DelegationError("der", "amount_minor is outside a 64-bit integer")
        cur = self.currency
        if not (isinstance(cur, str) and len(cur) == 3 and all("A" <= c <= "Z" for c in cur)):
            raise DelegationError("currency", f"currency {cur!r} is not an ISO 4217 code")

    @classmethod
    def parse(cls, text: str) -> ValueLimit:
        """Parses `<amount>:<CODE>` with at most two decimals, e.g. `500.00:EUR`."""
        amount, sep, currency = text.partition(":")
        match = _AMOUNT.fullmatch(amount) if sep else None
        if match is None:
            raise DelegationError(
                "currency",
                f"invalid value limit {text!r}: expected <amount>:<CODE>, e.g. 500.00:EUR",
            )
        whole, frac = match.group(1), match.group(2) or ""
        minor = int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
        if minor > _I64[1]:
            raise DelegationError("currency", f"invalid value limit {text!r}: too large")
        return cls(minor, currency)

    def __str__(self) -> str:
        sign = "-" if self.amount_minor < 0 else ""
        value = abs(self.amount_minor)
        return f"{sign}{value // 100}.{value % 100:02d}:{self.currency}"


@dataclass(frozen=True)
class Approval:
    """Who approved the task, and when (unix seconds)."""

    approver: str
    approved_at: int


@dataclass(frozen=True)
class Link:
    """An earlier hop of a delegation chain (audit only)."""

    principal: Principal
    task_id: str
    actor: str

    def __post_init__(self) -> None:
        check_task_id(self.task_id)
        if not isinstance(self.actor, str) or not self.actor.isascii():
            raise DelegationError("actor", "delegation chain actor is not ASCII")


@dataclass(frozen=True)
class TaskInfo:
    """The task a delegation runs under; `deadline` in unix seconds."""

    id: str
    purpose: str
    deadline: int
    depth: int
    max_depth: int

    def __post_init__(self) -> None:
        check_task_id(self.id)
        if not isinstance(self.purpose, str):
            raise DelegationError("claim", "purpose is not a string")
        if len(self.purpose.encode("utf-8")) > MAX_PURPOSE_LEN:
            raise DelegationError(
                "purpose", f"delegation purpose is longer than {MAX_PURPOSE_LEN} bytes"
            )
