"""mTLS contexts for the stdlib `ssl` module, fed by py-spiffe's `X509Source`: the SVID and
bundle follow rotation (each new connection gets a context built from the current SVID), and
peers are checked as SPIFFE X509-SVIDs of the trust domain (the chain by OpenSSL against the
bundle, then the leaf's SPIFFE ID, basic constraints and trust domain here).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import SpiffeId, X509Source, X509Svid

from .caller import spiffe_id_of
from .refusal import Refusal

__all__ = ["SvidContexts", "PeerError", "check_peer_svid", "current_svid", "x509_source"]


class PeerError(Exception):
    """The TLS peer is not an acceptable X509-SVID (no SPIFFE ID, a CA, another trust domain,
    or not the expected server)."""


def x509_source(
    endpoint: str | None = None, spiffe_id: str | None = None, timeout: float = 60.0
) -> X509Source:
    """An `X509Source` on the Workload API at `endpoint` (`unix:///path`; None reads
    `SPIFFE_ENDPOINT_SOCKET`) that picks the SVID named `spiffe_id`, else the first one.

    Blocks until the first update, or raises py-spiffe's error after `timeout` seconds; use
    `current_svid` to wait for the picked SVID.
    """
    picker: Callable[[list], object] | None = None
    if spiffe_id is not None:
        wanted = SpiffeId(spiffe_id)

        def pick(svids: list) -> object:
            # None (not an error) while the SVID has not arrived: py-spiffe would close the
            # source for good on an exception; `current_svid` waits for it instead.
            return next((svid for svid in svids if svid.spiffe_id == wanted), None)

        picker = pick
    return X509Source(socket_path=endpoint, timeout_in_seconds=timeout, svid_picker=picker)


def current_svid(source: X509Source, timeout: float = 0.0) -> X509Svid:
    """The source's SVID, waiting up to `timeout` seconds for a picked one to arrive.

    Raises `TimeoutError` when there is none by then.
    """
    deadline = time.monotonic() + timeout
    while True:
        svid = source.get_x509_context().default_svid
        if svid is not None:
            return svid
        if time.monotonic() >= deadline:
            raise TimeoutError("the Workload API has not delivered the wanted SVID")
        time.sleep(0.05)


def check_peer_svid(
    leaf_der: bytes | None, trust_domain: str, expected_id: str | None = None
) -> SpiffeId:
    """Checks a peer leaf that OpenSSL already chained to the bundle: exactly one SPIFFE ID,
    in `trust_domain`, not a CA, and (when given) equal to `expected_id`. Raises `PeerError`."""
    if not leaf_der:
        raise PeerError("the peer presented no certificate")
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        spiffe_id = spiffe_id_of(leaf)
    except (ValueError, Refusal) as error:
        raise PeerError(f"the peer certificate is no X509-SVID: {error}") from None
    if str(spiffe_id.trust_domain) != trust_domain:
        raise PeerError(f"peer {spiffe_id} is not in trust domain {trust_domain}")
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise PeerError("the peer leaf has no basicConstraints") from None
    if constraints.ca:
        raise PeerError("the peer leaf is a CA certificate")
    if expected_id is not None and str(spiffe_id) != expected_id:
        raise PeerError(f"peer {spiffe_id} is not the expected {expected_id}")
    return spiffe_id


class SvidContexts:
    """Builds `ssl.SSLContext`s from an `X509Source`, rebuilt when its SVID or bundle changes.

    `server()` requires a client certificate chained to the trust domain's bundle; `client()`
    presents the SVID and verifies the server against the bundle (check its SPIFFE ID with
    `check_peer_svid`, since SPIFFE does not use host names).
    """

    def __init__(self, source: X509Source, alpn: tuple[str, ...] = ("http/1.1",)) -> None:
        self._source = source
        self._alpn = list(alpn)
        self._lock = threading.Lock()
        self._cache: dict[bool, tuple[bytes, ssl.SSLContext]] = {}

    @property
    def spiffe_id(self) -> SpiffeId:
        """The SPIFFE ID of the current SVID."""
        return current_svid(self._source).spiffe_id

    @property
    def trust_domain(self) -> str:
        """The trust domain of the current SVID, as text."""
        return str(self.spiffe_id.trust_domain)

    def server(self) -> ssl.SSLContext:
        """A server context with the current SVID that requires a client SVID."""
        return self._context(server_side=True)

    def client(self) -> ssl.SSLContext:
        """A client context with the current SVID."""
        return self._context(server_side=False)

    def _context(self, server_side: bool) -> ssl.SSLContext:
        svid = current_svid(self._source)
        bundle = self._source.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        if bundle is None:
            raise ssl.SSLError(f"no bundle for {svid.spiffe_id.trust_domain}")
        authorities = sorted(
            ca.public_bytes(serialization.Encoding.DER) for ca in bundle.x509_authorities
        )
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in svid.cert_chain)
        key = (chain_pem, b"".join(authorities))
        with self._lock:
            cached = self._cache.get(server_side)
            if cached is not None and cached[0] == key:
                return cached[1]
            context = ssl.SSLContext(
                ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = False
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=b"".join(authorities))
            key_pem = svid.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _load_chain(context, chain_pem, key_pem)
            context.set_alpn_protocols(self._alpn)
            self._cache[server_side] = (key, context)
            return context


def _load_chain(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """`load_cert_chain` reads files only: write them to a private directory for a moment."""
    with tempfile.TemporaryDirectory(prefix="mandate-svid-") as directory:
        os.chmod(directory, 0o700)
        chain_path = os.path.join(directory, "chain.pem")
        key_path = os.path.join(directory, "key.pem")
        for path, data in ((chain_path, chain_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(chain_path, key_path)
