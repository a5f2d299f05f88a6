"""Exercises mandate-agent's Workload API with the PyPI `spiffe` package (a client we did not write).

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path/api.sock python workload_client.py <trust-domain> <audience>
Prints one JSON object with what it received; exits non-zero on any failure.
"""

import json
import sys

from spiffe import JwtSvid, TrustDomain, WorkloadApiClient, X509Source


def main() -> int:
    trust_domain = TrustDomain(sys.argv[1])
    audience = sys.argv[2]
    client = WorkloadApiClient(default_timeout=10.0)
    try:
        svid = client.fetch_x509_svid()
        x509_bundles = client.fetch_x509_bundles()
        x509_bundle = x509_bundles.get_bundle_for_trust_domain(trust_domain)
        jwt = client.fetch_jwt_svid(audience={audience})
        jwt_bundles = client.fetch_jwt_bundles()
        jwt_bundle = jwt_bundles.get_bundle_for_trust_domain(trust_domain)
        # Verified locally against the JWKS the agent served, then by the agent itself.
        local = JwtSvid.parse_and_validate(jwt.token, jwt_bundle, {audience})
        remote = client.validate_jwt_svid(jwt.token, audience)
    finally:
        client.close()

    with X509Source(timeout_in_seconds=10) as source:
        source_id = str(source.get_x509_context().default_svid.spiffe_id)

    print(json.dumps({
        "x509_spiffe_id": str(svid.spiffe_id),
        "chain_length": len(svid.cert_chain),
        "x509_authorities": len(x509_bundle.x509_authorities) if x509_bundle else 0,
        "jwt_spiffe_id": str(jwt.spiffe_id),
        "jwt_local_spiffe_id": str(local.spiffe_id),
        "jwt_remote_spiffe_id": str(remote.spiffe_id),
        "jwt_keys": len(jwt_bundle.jwt_authorities) if jwt_bundle else 0,
        "source_spiffe_id": source_id,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
