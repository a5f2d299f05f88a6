// Finding the extension in an X.509 certificate.

package delegation

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"strconv"
	"strings"
)

// OIDArcs is OID as an encoding/asn1 identifier.
var OIDArcs = mustParseOID(OID)

func mustParseOID(text string) asn1.ObjectIdentifier {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(text, ".") {
		// OID is a constant of decimal arcs, so this cannot fail.
		n, _ := strconv.Atoi(part)
		oid = append(oid, n)
	}
	return oid
}

// FromCertificate finds and decodes the delegation extension of cert. It returns (nil, nil)
// when the extension is absent.
//
// It fails with ErrCertificate when the extension appears twice or is marked critical, and as
// ParseDER when its value does not decode.
func FromCertificate(cert *x509.Certificate) (*Delegation, error) {
	var found *[]byte
	for i := range cert.Extensions {
		ext := &cert.Extensions[i]
		if !ext.Id.Equal(OIDArcs) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: certificate carries the delegation extension more than once", ErrCertificate)
		}
		if ext.Critical {
			return nil, fmt.Errorf("%w: delegation extension must not be critical", ErrCertificate)
		}
		found = &ext.Value
	}
	if found == nil {
		return nil, nil
	}
	return ParseDER(*found)
}
