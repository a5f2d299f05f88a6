"""The CRL check (DESIGN 3.4, the second, independent revocation path): refuse a peer whose
serial is listed in a CRL of the trust domain. The CRLs come from the Workload API `crl`
field of FetchX509SVID, and each is used only when its signature verifies with a CA
certificate of the trust domain's bundle.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Iterable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from spiffe._proto import workload_pb2, workload_pb2_grpc

from ._der import DerError, split_concatenated
from .refusal import Refusal
from .status import CHANNEL_OPTIONS, WORKLOAD_HEADER, grpc_target

__all__ = ["RevokedSerials", "revoked_serials", "CrlWatcher", "parse_bundle"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevokedSerials:
    """Serials listed by verified CRLs, per issuer (the issuer name's DER)."""

    by_issuer: dict[bytes, frozenset[int]] = field(default_factory=dict)

    def check(self, certificate: x509.Certificate) -> None:
        """Raises `Refusal` certificate_revoked when a verified CRL of its issuer lists it."""
        serials = self.by_issuer.get(certificate.issuer.public_bytes())
        if serials is not None and certificate.serial_number in serials:
            raise Refusal.certificate_revoked(certificate.serial_number)


def parse_bundle(bundle: bytes) -> list[x509.Certificate]:
    """The CA certificates of a Workload API bundle (concatenated DER); bad ones are skipped."""
    certs = []
    try:
        parts = split_concatenated(bundle)
    except DerError as error:
        _log.warning("bundle does not parse: %s", error)
        return certs
    for part in parts:
        try:
            certs.append(x509.load_der_x509_certificate(part))
        except ValueError as error:
            _log.warning("bundle certificate does not parse: %s", error)
    return certs


def revoked_serials(
    crls: Iterable[bytes], authorities: Iterable[x509.Certificate]
) -> RevokedSerials:
    """The serials of every CRL whose signature verifies with one of `authorities` (whose
    subject is the CRL's issuer). CRLs that do not parse or verify are ignored and logged."""
    authorities = list(authorities)
    by_issuer: dict[bytes, set[int]] = {}
    for der in crls:
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError as error:
            _log.warning("ignoring a CRL that does not parse: %s", error)
            continue
        if not any(ca.subject == crl.issuer and _signed_by(crl, ca) for ca in authorities):
            _log.warning(
                "ignoring a CRL of %s: no CA of the bundle signed it", crl.issuer.rfc4514_string()
            )
            continue
        serials = by_issuer.setdefault(crl.issuer.public_bytes(), set())
        serials.update(entry.serial_number for entry in crl)
    return RevokedSerials({k: frozenset(v) for k, v in by_issuer.items()})


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        return False
    try:
        return crl.is_signature_valid(key)
    except (TypeError, ValueError):
        return False


class CrlWatcher:
    """Follows the agent's FetchX509SVID stream in a daemon thread and keeps the verified
    serials of its `crl` field. Until a first message arrives it refuses nothing (the
    task-status view is the fail-closed path); reconnects with backoff."""

    def __init__(
        self, endpoint: str | None = None, initial_backoff: float = 0.1, max_backoff: float = 2.0
    ) -> None:
        self.target = grpc_target(endpoint)
        self._revoked = RevokedSerials()
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call = None
        self._thread = threading.Thread(target=self._follow, name="mandate-crl", daemon=True)
        self._thread.start()

    def check(self, certificate: x509.Certificate) -> None:
        """Raises `Refusal` certificate_revoked when a verified CRL lists `certificate`."""
        self._revoked.check(certificate)

    def revoked(self) -> RevokedSerials:
        """The current verified serials."""
        return self._revoked

    def wait_ready(self, timeout: float) -> bool:
        """Waits for the first message, or `timeout` seconds; returns whether it came."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stops following the stream."""
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self._thread.join(timeout=5)

    def __enter__(self) -> CrlWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _follow(self) -> None:
        backoff = self._initial_backoff
        while not self._stop.is_set():
            try:
                with grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
                    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
                    call = stub.FetchX509SVID(
                        workload_pb2.X509SVIDRequest(), metadata=WORKLOAD_HEADER
                    )
                    with self._lock:
                        if self._stop.is_set():
                            return
                        self._call = call
                    for message in call:
                        authorities = [
                            ca for svid in message.svids for ca in parse_bundle(svid.bundle)
                        ]
                        self._revoked = revoked_serials(message.crl, authorities)
                        self._ready.set()
                        backoff = self._initial_backoff
            except grpc.RpcError as error:
                _log.debug("crl stream unavailable (%s); reconnecting", error.code())
            finally:
                with self._lock:
                    self._call = None
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff)
