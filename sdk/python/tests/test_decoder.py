"""The DER decoder against the workspace's golden and malformed vectors, and against inputs
built here with one thing wrong each."""

from __future__ import annotations

import json
import random

import pytest

from mandate_verify import Delegation, DelegationError
from mandate_verify import _der
from mandate_verify._der import tlv, integer

from conftest import DATA, golden, golden_chain2

GOLDEN_FILES = sorted(DATA.glob("*.der"))
MALFORMED_FILES = sorted((DATA / "malformed").glob("*.der"))
EXPECTED = {"delegation-golden.der": golden, "delegation-golden-chain2.der": golden_chain2}


def test_golden_files_exist() -> None:
    assert any(p.name == "delegation-golden.der" for p in GOLDEN_FILES), DATA


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_vector_decodes_and_reencodes(path) -> None:
    der = path.read_bytes()
    decoded = Delegation.from_der(der)
    assert decoded.to_der() == der
    assert Delegation.from_claim(json.loads(json.dumps(decoded.to_claim()))) == decoded
    if path.name in EXPECTED:
        assert decoded == EXPECTED[path.name]()
    hex_path = path.with_suffix(".hex")
    if hex_path.exists():
        assert bytes.fromhex("".join(hex_path.read_text().split())) == der
    claim_path = path.with_suffix(".json")
    if claim_path.exists():
        assert decoded.to_claim() == json.loads(claim_path.read_text())


def test_golden_values_encode_to_the_committed_bytes() -> None:
    assert golden().to_der() == (DATA / "delegation-golden.der").read_bytes()
    assert len(golden().to_der()) == 266
    chain2 = DATA / "delegation-golden-chain2.der"
    if chain2.exists():
        assert golden_chain2().to_der() == chain2.read_bytes()


@pytest.mark.parametrize("path", MALFORMED_FILES, ids=lambda p: p.name)
def test_malformed_vector_is_refused(path) -> None:
    with pytest.raises(DelegationError):
        Delegation.from_der(path.read_bytes())


# --- vectors built here --------------------------------------------------------------------


def utf8(text: str) -> bytes:
    return tlv(_der.UTF8_STRING, text.encode())


def principal(kind: int, ident: str, raw_kind: bytes | None = None) -> bytes:
    kind_tlv = raw_kind if raw_kind is not None else integer(kind, _der.ENUMERATED)
    return tlv(0x30, kind_tlv + utf8(ident))


def task(
    ident="task-1", purpose="p", time=b"20261201120000Z", depth=integer(0), max_depth=integer(1)
) -> bytes:
    return tlv(0x30, utf8(ident) + utf8(purpose) + tlv(0x18, time) + depth + max_depth)


def link(actor: bytes = tlv(0x16, b"spiffe://example.org/a"), task_id: str = "t-0") -> bytes:
    return tlv(0x30, principal(0, "carol") + utf8(task_id) + actor)


def build(version=integer(1), p=None, t=None, actions=None, optional=b"", outer_tag=0x30) -> bytes:
    p = principal(0, "alice@example.org") if p is None else p
    t = task() if t is None else t
    actions = tlv(0x30, utf8("po.draft")) if actions is None else actions
    return tlv(outer_tag, version + p + t + actions + optional)


def limit(amount=integer(50000), currency=b"EUR", tag=0x13) -> bytes:
    return tlv(0xA0, amount + tlv(tag, currency))


APPROVAL = tlv(0xA1, utf8("bob") + tlv(0x18, b"20261122093000Z"))


def test_the_builder_makes_valid_der() -> None:
    for der in [build(), build(optional=limit() + APPROVAL + tlv(0xA2, link()))]:
        assert Delegation.from_der(der).to_der() == der


def long_form(tag: int, content: bytes) -> bytes:
    return bytes([tag, 0x81, len(content)]) + content


BAD = {
    "version 2": build(version=integer(2)),
    "version 0": build(version=integer(0)),
    "version negative": build(version=integer(-1)),
    "version with a redundant leading zero": build(version=tlv(2, b"\x00\x01")),
    "trailing byte": build() + b"\x00",
    "trailing value": build() + integer(1),
    "byte after the last field": build(optional=b"\x05\x00"),
    "outer SET instead of SEQUENCE": build(outer_tag=0x31),
    "long-form length under 128": long_form(0x30, build()[2:]),
    "indefinite length": b"\x30\x80" + build()[2:] + b"\x00\x00",
    "length with a leading zero": b"\x30\x82\x00" + bytes([len(build()) - 2]) + build()[2:],
    "high tag number": build(optional=b"\x3f\x20\x00"),
    "unknown principal kind 3": build(p=principal(3, "alice")),
    "principal kind with a redundant byte": build(p=principal(0, "alice", tlv(0x0A, b"\x00\x00"))),
    "empty principal id": build(p=principal(0, "")),
    "principal id of 257 bytes": build(p=principal(0, "a" * 257)),
    "principal id with a control char": build(p=principal(0, "al\x07ice")),
    "workload principal that is no SPIFFE ID": build(p=principal(2, "alice")),
    "workload principal with an upper-case trust domain": build(
        p=principal(2, "spiffe://Example.org/x")
    ),
    "task id of 65 chars": build(t=task(ident="t" * 65)),
    "task id with a space": build(t=task(ident="t 1")),
    "empty task id": build(t=task(ident="")),
    "purpose of 257 bytes": build(t=task(purpose="p" * 257)),
    "deadline as UTCTime": build(
        t=tlv(0x30, utf8("t") + utf8("p") + tlv(0x17, b"261201120000Z") + integer(0) + integer(0))
    ),
    "deadline with fractional seconds": build(t=task(time=b"20261201120000.5Z")),
    "deadline without Z": build(t=task(time=b"20261201120000+0000")),
    "deadline on February 30": build(t=task(time=b"20260230120000Z")),
    "deadline at hour 24": build(t=task(time=b"20261201240000Z")),
    "deadline before 1970": build(t=task(time=b"19691231235959Z")),
    "depth 256": build(t=task(depth=integer(256), max_depth=integer(256))),
    "depth over max depth": build(t=task(depth=integer(2), max_depth=integer(1))),
    "negative max depth": build(t=task(max_depth=integer(-1))),
    "65 actions": build(actions=tlv(0x30, b"".join(utf8(f"a{i}") for i in range(65)))),
    "action with a space": build(actions=tlv(0x30, utf8("po draft"))),
    "empty action": build(actions=tlv(0x30, utf8(""))),
    "action of 129 bytes": build(actions=tlv(0x30, utf8("a" * 129))),
    "action as IA5String": build(actions=tlv(0x30, tlv(0x16, b"po.draft"))),
    "action that is not UTF-8": build(actions=tlv(0x30, tlv(0x0C, b"po\xff"))),
    "currency of 2 letters": build(optional=limit(currency=b"EU")),
    "lower-case currency": build(optional=limit(currency=b"eur")),
    "currency as UTF8String": build(optional=limit(tag=0x0C)),
    "amount over 64 bits": build(optional=limit(amount=integer(2**63))),
    "amount with a redundant leading 0xff": build(optional=limit(amount=tlv(2, b"\xff\xff"))),
    "value limit as a plain SEQUENCE": build(optional=tlv(0x30, integer(1) + tlv(0x13, b"EUR"))),
    "value limit with a trailing field": build(
        optional=tlv(0xA0, integer(1) + tlv(0x13, b"EUR") + integer(1))
    ),
    "approval before value limit": build(optional=APPROVAL + limit()),
    "value limit twice": build(optional=limit() + limit()),
    "unknown context tag [3]": build(optional=tlv(0xA3, b"")),
    "primitive [0] instead of constructed": build(
        optional=tlv(0x80, integer(1) + tlv(0x13, b"EUR"))
    ),
    "empty chain": build(optional=tlv(0xA2, b"")),
    "chain of 9 links": build(optional=tlv(0xA2, link() * 9)),
    "chain actor not ASCII": build(optional=tlv(0xA2, link(actor=tlv(0x16, b"caf\xe9")))),
    "chain actor as UTF8String": build(optional=tlv(0xA2, link(actor=utf8("x")))),
    "chain link with a bad task id": build(optional=tlv(0xA2, link(task_id="a/b"))),
    "over 64 KiB": build(actions=tlv(0x30, b"".join(utf8("a" * 100) for _ in range(660)))),
    "empty input": b"",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_built_bad_vector_is_refused(name: str) -> None:
    with pytest.raises(DelegationError) as refused:
        Delegation.from_der(BAD[name])
    assert str(refused.value)


def test_refusal_kinds_name_the_rule() -> None:
    kinds = {
        "version 2": "version",
        "trailing byte": "der",
        "long-form length under 128": "der",
        "over 64 KiB": "too_large",
        "empty chain": "chain_length",
        "chain of 9 links": "chain_length",
        "65 actions": "actions",
        "depth over max depth": "depth",
        "purpose of 257 bytes": "purpose",
        "workload principal with an upper-case trust domain": "non_canonical",
        "lower-case currency": "currency",
        "task id of 65 chars": "task_id",
        "action with a space": "action",
        "principal id of 257 bytes": "principal",
    }
    for name, kind in kinds.items():
        with pytest.raises(DelegationError) as refused:
            Delegation.from_der(BAD[name])
        assert refused.value.kind == kind, name


def test_every_truncation_of_the_golden_vector_is_refused() -> None:
    der = (DATA / "delegation-golden.der").read_bytes()
    for end in range(len(der)):
        with pytest.raises(DelegationError):
            Delegation.from_der(der[:end])


def test_random_corruption_never_raises_anything_else() -> None:
    der = bytearray((DATA / "delegation-golden.der").read_bytes())
    rng = random.Random(4711)
    accepted = 0
    for _ in range(3000):
        mutated = bytearray(der)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            decoded = Delegation.from_der(bytes(mutated))
        except DelegationError:
            continue
        # Whatever is accepted is canonical: it re-encodes to exactly the input.
        assert decoded.to_der() == bytes(mutated)
        accepted += 1
    assert accepted < 3000
