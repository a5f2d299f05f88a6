package crl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newAuthority(t *testing.T, name string) authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return authority{cert: cert, key: key}
}

func (a authority) crl(t *testing.T, serials ...int64) []byte {
	t.Helper()
	list := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		list.RevokedCertificateEntries = append(list.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, list, a.cert, a.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCollectKeepsOnlyVerifiedCrls(t *testing.T) {
	ours, stranger := newAuthority(t, "ours"), newAuthority(t, "stranger")
	set, err := Collect([][]byte{ours.crl(t, 42, 7), stranger.crl(t, 43), []byte("junk")},
		[]*x509.Certificate{ours.cert})
	if !set.Revoked(big.NewInt(42)) || !set.Revoked(big.NewInt(7)) {
		t.Fatal("serials of our CA's CRL are not revoked")
	}
	if set.Revoked(big.NewInt(43)) {
		t.Fatal("a CRL signed by another CA was trusted")
	}
	if set.Revoked(big.NewInt(8)) || set.Len() != 2 {
		t.Fatalf("unexpected set of %d", set.Len())
	}
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("want ErrUnverified among %v", err)
	}
	var none *Set
	if none.Revoked(big.NewInt(42)) {
		t.Fatal("nil set revokes")
	}
}

type fakeWorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	responses chan *workload.X509BundlesResponse
}

func (f *fakeWorkloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	for {
		select {
		case r := <-f.responses:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func TestWatcherFollowsTheWorkloadApiCrlField(t *testing.T) {
	ca, stranger := newAuthority(t, "ca"), newAuthority(t, "stranger")
	path := filepath.Join(t.TempDir(), "agent.sock")
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeWorkloadAPI{responses: make(chan *workload.X509BundlesResponse, 2)}
	server := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()

	w := Start(path)
	defer w.Close()
	if err := w.Check(big.NewInt(5)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("before any message: %v", err)
	}
	bundles := map[string][]byte{"spiffe://example.org": ca.cert.Raw}
	fake.responses <- &workload.X509BundlesResponse{Bundles: bundles, Crl: [][]byte{ca.crl(t), stranger.crl(t, 9)}}
	if !w.WaitReady(5 * time.Second) {
		t.Fatal("no response")
	}
	if w.Check(big.NewInt(5)) != nil || w.Check(big.NewInt(9)) != nil {
		t.Fatal("nothing of ours is revoked yet")
	}
	if !errors.Is(w.Err(), ErrUnverified) {
		t.Fatalf("the stranger's CRL is reported: %v", w.Err())
	}
	fake.responses <- &workload.X509BundlesResponse{Bundles: bundles, Crl: [][]byte{ca.crl(t, 5)}}
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(w.Check(big.NewInt(5)), ErrRevoked) {
		if time.Now().After(deadline) {
			t.Fatal("serial 5 never revoked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestACrlWhoseIssuerIsAnotherNameIsRefused(t *testing.T) {
	ca := newAuthority(t, "ca")
	// Same key, another subject: the signature verifies, but the issuer is not this CA.
	renamed := *ca.cert
	renamed.RawSubject = append([]byte{}, newAuthority(t, "other").cert.RawSubject...)
	set, err := Collect([][]byte{ca.crl(t, 5)}, []*x509.Certificate{&renamed})
	if set.Revoked(big.NewInt(5)) || !errors.Is(err, ErrUnverified) {
		t.Fatalf("a CRL was trusted under another name: %v", err)
	}
}
