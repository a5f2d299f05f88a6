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
	responses chan *workload.X509SVIDResponse
}

func (f *fakeWorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
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
	fake := &fakeWorkloadAPI{responses: make(chan *workload.X509SVIDResponse, 2)}
	server := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(server, fake)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()

	w := Start(path)
	defer w.Close()
	svid := &workload.X509SVID{SpiffeId: "spiffe://example.org/po", X509Svid: ca.cert.Raw, Bundle: ca.cert.Raw}
	fake.responses <- &workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}, Crl: [][]byte{ca.crl(t), stranger.crl(t, 9)}}
	if !w.WaitReady(5 * time.Second) {
		t.Fatal("no response")
	}
	if w.Revoked(big.NewInt(5)) || w.Revoked(big.NewInt(9)) {
		t.Fatal("nothing of ours is revoked yet")
	}
	fake.responses <- &workload.X509SVIDResponse{Svids: []*workload.X509SVID{svid}, Crl: [][]byte{ca.crl(t, 5)}}
	deadline := time.Now().Add(5 * time.Second)
	for !w.Revoked(big.NewInt(5)) {
		if time.Now().After(deadline) {
			t.Fatal("serial 5 never revoked")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
