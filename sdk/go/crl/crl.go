// Package crl is the second, independent revocation path of DESIGN 3.4: it follows the
// Workload API's `crl` fields (which go-spiffe's X509Source does not expose), verifies each
// CRL's signature against the trust domain's CA certificates, and answers whether a peer
// certificate's serial is revoked.
package crl

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
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
		if list.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// Authorities are the certificates a CRL of the trust domain may be signed by: the bundle's
// CA certificates, plus any CA certificate of the SVID chains (intermediates) that chains to
// the bundle at now.
func Authorities(bundle []*x509.Certificate, chains [][]*x509.Certificate, now time.Time) []*x509.Certificate {
	out := append([]*x509.Certificate{}, bundle...)
	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}
	for _, chain := range chains {
		for i, c := range chain {
			if i == 0 || !c.IsCA {
				continue
			}
			inter := x509.NewCertPool()
			for _, other := range chain[i+1:] {
				inter.AddCert(other)
			}
			opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
			if _, err := c.Verify(opts); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
