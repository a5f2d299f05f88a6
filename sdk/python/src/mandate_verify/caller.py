"""The caller: its SPIFFE ID and delegation, read once from the TLS peer certificate, and the
policy that says which SPIFFE IDs must carry a delegation (DESIGN 3.3, DELEGATION.md 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from cryptography import x509
from cryptography.x509.oid import ExtensionOID
import jwt
from spiffe import JwtSvid, SpiffeId

from .delegation import Delegation
from .model import DelegationError, parse_spiffe_id
from .refusal import Refusal

__all__ = ["DelegationPolicy", "CallerIdentity", "spiffe_id_of"]


class DelegationPolicy:
    """Which callers must carry a delegation.

    A caller whose SPIFFE ID path equals one of the prefixes, or lies below one (`/ai` covers
    `/ai/procurement` but not `/aid`), is refused when its certificate has no delegation.
    """

    def __init__(self, required_prefixes: Iterable[str] = ()) -> None:
        self._prefixes = tuple(p.rstrip("/") for p in required_prefixes)

    @classmethod
    def require_under(cls, *prefixes: str) -> DelegationPolicy:
        """A policy requiring a delegation under each prefix (a trailing `/` is ignored)."""
        return cls(prefixes)

    def requires_delegation(self, spiffe_id: SpiffeId) -> bool:
        """Whether `spiffe_id` must carry a delegation."""
        path = spiffe_id.path
        return any(
            not prefix or path == prefix or path.startswith(prefix + "/")
            for prefix in self._prefixes
        )

    def __repr__(self) -> str:
        return f"DelegationPolicy({list(self._prefixes)!r})"


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId:
    """The one SPIFFE ID of an X509-SVID (exactly one URI SAN, a SPIFFE ID).

    Raises `Refusal` `no_spiffe_id` otherwise.
    """
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        raise Refusal.no_spiffe_id("no subject alternative name") from None
    except ValueError as error:  # duplicate or unparsable extensions
        raise Refusal.no_spiffe_id(f"extensions do not parse: {error}") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise Refusal.no_spiffe_id(f"expected exactly one URI SAN, found {len(uris)}")
    if not uris[0].startswith("spiffe://"):
        raise Refusal.no_spiffe_id(f"URI SAN {uris[0]!r} is not a SPIFFE ID")
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except DelegationError as error:
        raise Refusal.no_spiffe_id(str(error)) from None
    if not spiffe_id.path:
        raise Refusal.no_spiffe_id("a leaf SPIFFE ID needs a path")
    return spiffe_id


@dataclass(frozen=True)
class CallerIdentity:
    """Who is calling: the peer certificate's SPIFFE ID, its delegation (if any) and the
    certificate itself (its serial is checked against the trust domain's CRLs).

    Read it once per connection with `from_certificate`; authorize every request.
    """

    spiffe_id: SpiffeId
    delegation: Delegation | None
    certificate: x509.Certificate | None = None

    @classmethod
    def from_certificate(
        cls, leaf: x509.Certificate | bytes | None, policy: DelegationPolicy
    ) -> CallerIdentity:
        """Reads the caller from its leaf certificate (DER or parsed) and applies `policy`.

        Raises `Refusal`: `no_peer_certificate` for none, `no_spiffe_id` without exactly one
        SPIFFE ID, `delegation_malformed` when the extension is present but does not parse
        (whatever the policy), and `delegation_required` when policy requires a delegation
        that is absent.
        """
        if leaf is None or (isinstance(leaf, (bytes, bytearray)) and not leaf):
            raise Refusal.no_peer_certificate()
        if isinstance(leaf, (bytes, bytearray, memoryview)):
            try:
                leaf = x509.load_der_x509_certificate(bytes(leaf))
            except ValueError as error:
                raise Refusal.no_spiffe_id(f"certificate does not parse: {error}") from None
        spiffe_id = spiffe_id_of(leaf)
        try:
            delegation = Delegation.from_certificate(leaf)
        except DelegationError as error:
            raise Refusal.delegation_malformed(str(error)) from None
        if delegation is None and policy.requires_delegation(spiffe_id):
            raise Refusal.delegation_required(str(spiffe_id))
        return cls(spiffe_id, delegation, leaf)

    @classmethod
    def from_jwt_svid(cls, svid: JwtSvid, policy: DelegationPolicy) -> CallerIdentity:
        """Reads the caller from a JWT-SVID that py-spiffe already validated
        (`JwtSvid.parse_and_validate`): its `sub` and its `delegation` claim (DESIGN 3.3).

        Raises `Refusal` `delegation_malformed` when the claim is present but wrong, and
        `delegation_required` when policy requires a delegation that is absent. The CRL check
        does not apply (there is no certificate); the task-status rules do.
        """
        # The token's signature, audience and expiry were checked by py-spiffe; read its claims.
        claims = jwt.decode(svid.token, options={"verify_signature": False})
        delegation = None
        if claims.get("delegation") is not None:
            try:
                delegation = Delegation.from_claim(claims["delegation"])
            except DelegationError as error:
                raise Refusal.delegation_malformed(str(error)) from None
        if delegation is None and policy.requires_delegation(svid.spiffe_id):
            raise Refusal.delegation_required(str(svid.spiffe_id))
        return cls(svid.spiffe_id, delegation)
