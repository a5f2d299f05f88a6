// The caller and the policy that says which SPIFFE IDs must carry a delegation.

package verify

import (
	"crypto/tls"
	"crypto/x509"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mandate-dev/mandate/sdk/go/delegation"
)

// Policy says which callers must carry a delegation: those whose SPIFFE ID path equals one of
// its prefixes or lies below one (`/ai` covers `/ai/procurement`, not `/aid`).
type Policy struct {
	prefixes []string
}

// RequireUnder is a policy requiring a delegation under each prefix; a trailing `/` is ignored.
func RequireUnder(prefixes ...string) Policy {
	p := Policy{}
	for _, prefix := range prefixes {
		p.prefixes = append(p.prefixes, strings.TrimRight(prefix, "/"))
	}
	return p
}

// RequiresDelegation reports whether id must carry a delegation.
func (p Policy) RequiresDelegation(id spiffeid.ID) bool {
	path := id.Path()
	for _, prefix := range p.prefixes {
		if prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/") {
			return true
		}
	}
	return false
}

// Caller is who is calling: the peer certificate's SPIFFE ID, its delegation (nil when it has
// none) and its certificate (for the CRL check; nil for a caller built by hand).
type Caller struct {
	ID          spiffeid.ID
	Delegation  *delegation.Delegation
	Certificate *x509.Certificate
}

// CallerFromCertificate reads the caller from its leaf certificate and applies policy.
//
// It refuses with no_spiffe_id when the certificate has not exactly one SPIFFE ID,
// delegation_malformed when its delegation extension is present but does not decode (whatever
// the policy), and delegation_required when policy requires a delegation that is absent.
func CallerFromCertificate(leaf *x509.Certificate, policy Policy) (*Caller, *Refusal) {
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, refuse(CodeNoSpiffeID, "the peer certificate carries no valid SPIFFE ID: %v", err)
	}
	d, err := delegation.FromCertificate(leaf)
	if err != nil {
		return nil, refuse(CodeDelegationMalformed, "the delegation extension does not parse: %v", err)
	}
	if d == nil && policy.RequiresDelegation(id) {
		return nil, refuse(CodeDelegationRequired, "%s must carry a delegation and carries none", id)
	}
	return &Caller{ID: id, Delegation: d, Certificate: leaf}, nil
}

// CallerFromConnectionState reads the caller of an accepted TLS connection (r.TLS in an
// http.Handler); it refuses with no_peer_certificate when the peer sent none.
func CallerFromConnectionState(state *tls.ConnectionState, policy Policy) (*Caller, *Refusal) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil, refuse(CodeNoPeerCertificate, "the peer presented no client certificate")
	}
	return CallerFromCertificate(state.PeerCertificates[0], policy)
}
