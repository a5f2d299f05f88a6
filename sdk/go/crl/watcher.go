// Following FetchX509Bundles for its `crl` fields.

package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"

	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
)

// Errors of Watcher.Check.
var (
	// ErrUnavailable: no bundle message (and so no CRL) has arrived yet; fail closed.
	ErrUnavailable = errors.New("no CRLs from the agent yet")
	// ErrRevoked: the serial is listed in a verified CRL of the trust domain.
	ErrRevoked = errors.New("certificate serial is revoked")
)

// Watcher holds the newest verified revocation Set from the local agent's Workload API.
type Watcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{}

	mu      sync.Mutex
	set     *Set
	lastErr error
}

// Start follows FetchX509Bundles on the agent socket at socketPath with the standard Workload
// API stubs (go-spiffe's sources drop the `crl` field) and reconnects with backoff (100 ms
// doubling to 2 s). Each message replaces the Set with the serials of its verified CRLs.
func Start(socketPath string) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	go w.follow(ctx, socketPath)
	return w
}

// Check fails with ErrRevoked when serial is in a verified CRL, and with ErrUnavailable while
// no bundle message has arrived (the Rust verifier fails closed there too).
func (w *Watcher) Check(serial *big.Int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.set == nil:
		return ErrUnavailable
	case w.set.Revoked(serial):
		return fmt.Errorf("%w: %x", ErrRevoked, serial)
	}
	return nil
}

// Err is why the last message's CRLs were not all usable, or nil.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// WaitReady waits until the first message was processed or timeout passes.
func (w *Watcher) WaitReady(timeout time.Duration) bool {
	select {
	case <-w.ready:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close stops following and waits for the goroutine to end.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

func (w *Watcher) follow(ctx context.Context, socketPath string) {
	defer close(w.done)
	const initial, most = 100 * time.Millisecond, 2 * time.Second
	backoff := initial
	for {
		if w.streamOnce(ctx, socketPath) {
			backoff = initial
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, most)
	}
}

func (w *Watcher) streamOnce(ctx context.Context, socketPath string) bool {
	conn, err := taskstatus.Dial(socketPath)
	if err != nil {
		return false
	}
	defer conn.Close()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).
		FetchX509Bundles(taskstatus.WithWorkloadHeader(ctx), &workload.X509BundlesRequest{})
	if err != nil {
		return false
	}
	received := false
	for {
		response, err := stream.Recv()
		if err != nil {
			return received
		}
		received = true
		w.apply(response)
	}
}

func (w *Watcher) apply(response *workload.X509BundlesResponse) {
	var authorities []*x509.Certificate
	for _, bundle := range response.GetBundles() {
		if certs, err := x509.ParseCertificates(bundle); err == nil {
			authorities = append(authorities, certs...)
		}
	}
	set, err := Collect(response.GetCrl(), authorities)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set, w.lastErr = set, err
	select {
	case <-w.ready:
	default:
		close(w.ready)
	}
}
