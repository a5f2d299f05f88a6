"""The CRL check: CRLs made with `cryptography` at test time, verified against the bundle's CA
certificates, and followed live from a FetchX509SVID stream on a unix socket."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric import ec
from spiffe._proto import workload_pb2

from mandate_verify import CrlWatcher, Refusal
from mandate_verify.revocation import parse_bundle, revoked_serials

from certs import Authority, der
from fake_agent import FakeAgent


def refused(view, cert) -> str | None:
    try:
        view.check(cert)
    except Refusal as refusal:
        return refusal.code
    return None


def test_a_verified_crl_refuses_its_serials_only() -> None:
    ca = Authority()
    revoked, fine = ca.leaf("spiffe://example.org/ai/a"), ca.leaf("spiffe://example.org/ai/b")
    view = revoked_serials([ca.crl([revoked.serial_number])], [ca.cert])
    assert refused(view, revoked) == "certificate_revoked"
    assert refused(view, fine) is None


def test_crls_that_do_not_verify_are_ignored() -> None:
    ca, other = Authority(), Authority("other CA")
    leaf = ca.leaf("spiffe://example.org/ai/a")
    forged = ca.crl([leaf.serial_number], signer=ec.generate_private_key(ec.SECP256R1()))
    assert refused(revoked_serials([forged], [ca.cert]), leaf) is None
    # Signed by a CA that is not in the bundle.
    assert refused(revoked_serials([ca.crl([leaf.serial_number])], [other.cert]), leaf) is None
    # Garbage next to a good CRL does not hide the good one.
    view = revoked_serials([b"\x30\x00", ca.crl([leaf.serial_number])], [other.cert, ca.cert])
    assert refused(view, leaf) == "certificate_revoked"
    # Another issuer's CRL does not refuse this CA's serial.
    other_leaf = other.leaf("spiffe://example.org/ai/b")
    view = revoked_serials([other.crl([leaf.serial_number])], [other.cert])
    assert refused(view, leaf) is None
    assert refused(view, other_leaf) is None


def test_bundles_are_concatenated_der() -> None:
    a, b = Authority(), Authority("b")
    assert [c.subject for c in parse_bundle(der(a.cert) + der(b.cert))] == [
        a.cert.subject,
        b.cert.subject,
    ]
    assert parse_bundle(b"\x30\x81") == []


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def message(ca: Authority, crls: list[bytes]) -> workload_pb2.X509SVIDResponse:
    svid = workload_pb2.X509SVID(spiffe_id="spiffe://example.org/po-service", bundle=der(ca.cert))
    return workload_pb2.X509SVIDResponse(svids=[svid], crl=crls)


def test_the_watcher_follows_the_crl_field(tmp_path) -> None:
    ca = Authority()
    leaf = ca.leaf("spiffe://example.org/ai/a")
    agent = FakeAgent(str(tmp_path / "api.sock"))
    try:
        agent.first_x509 = message(ca, [ca.crl([])])
        with CrlWatcher(agent.endpoint) as watcher:
            assert watcher.wait_ready(5)
            assert refused(watcher, leaf) is None
            agent.x509.push(message(ca, [ca.crl([leaf.serial_number])]))
            assert wait_for(lambda: refused(watcher, leaf) == "certificate_revoked")
            forged = ca.crl([leaf.serial_number], signer=ec.generate_private_key(ec.SECP256R1()))
            agent.x509.push(message(ca, [forged]))
            assert wait_for(lambda: refused(watcher, leaf) is None)
    finally:
        agent.stop()
