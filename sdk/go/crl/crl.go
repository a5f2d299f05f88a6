// Package crl is the second, independent revocation path of DESIGN 3.4, as in the Rust
// mandate-verify: it follows the `crl` fields of the agent's FetchX509Bundles stream (which
// go-spiffe's sources do not expose), trusts a CRL only when its issuer is a CA certificate of
// the bundle and its signature verifies against it, and answers whether a peer certificate's
// serial is revoked.
package crl

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
)

// Set is the revoked serials of every CRL whose signature verified.
type Set struct {
	revoked map[string]struct{}
}

// Revoked reports whether serial is listed. A nil Set lists nothing.
func (s *Set) Revoked(serial *big.Int) bool {
	if s == nil || serial == nil {
		return false
	}
	_, ok := s.revoked[serial.Text(16)]
	return ok
}

// Len is the number of revoked serials.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.revoked)
}

// ErrUnverified: a CRL's signature matches none of the authorities.
var ErrUnverified = errors.New("crl signature does not verify against any CA of the trust domain")

// Collect parses each DER CRL, keeps those signed by one of authorities, and returns the
// union of their revoked serials. A CRL that does not parse or verify is left out, and the
// returned error (joined, one per such CRL) says why; the Set holds the rest.
func Collect(crls [][]byte, authorities []*x509.Certificate) (*Set, error) {
	set := &Set{revoked: map[string]struct{}{}}
	var errs []error
	for i, der := range crls {
		list, err := x509.ParseRevocationList(der)
		if err != nil {
			errs = append(errs, fmt.Errorf("crl %d: %w", i, err))
			continue
		}
		if !signedByOneOf(list, authorities) {
			errs = append(errs, fmt.Errorf("crl %d (issuer %s): %w", i, list.Issuer, ErrUnverified))
			continue
		}
		for _, entry := range list.RevokedCertificateEntries {
			set.revoked[entry.SerialNumber.Text(16)] = struct{}{}
		}
	}
	return set, errors.Join(errs...)
}

func signedByOneOf(list *x509.RevocationList, authorities []*x509.Certificate) bool {
	for _, ca := range authorities {
		if bytes.Equal(ca.RawSubject, list.RawIssuer) && list.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}
