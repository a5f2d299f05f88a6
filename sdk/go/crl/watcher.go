// Following FetchX509SVID for its `crl` fields.

package crl

import (
	"context"
	"crypto/x509"
	"math/big"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"

	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
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

// Start follows FetchX509SVID on the agent socket at socketPath (a direct call with the
// standard Workload API stubs, since go-spiffe's X509Source drops the `crl` field) and
// reconnects with backoff (100 ms doubling to 2 s). Until the first response, nothing is
// revoked: the task-status watcher, which fails closed, is the primary path.
func Start(socketPath string) *Watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	go w.follow(ctx, socketPath)
	return w
}

// Revoked reports whether cert's serial is in a verified CRL of the trust domain.
func (w *Watcher) Revoked(serial *big.Int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.Revoked(serial)
}

// Err is why the last response's CRLs were not all usable, or nil.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// WaitReady waits until the first response was processed or timeout passes.
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
		FetchX509SVID(taskstatus.WithWorkloadHeader(ctx), &workload.X509SVIDRequest{})
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
		w.apply(response, time.Now())
	}
}

func (w *Watcher) apply(response *workload.X509SVIDResponse, now time.Time) {
	var bundle []*x509.Certificate
	var chains [][]*x509.Certificate
	for _, svid := range response.GetSvids() {
		if certs, err := x509.ParseCertificates(svid.GetBundle()); err == nil {
			bundle = append(bundle, certs...)
		}
		if certs, err := x509.ParseCertificates(svid.GetX509Svid()); err == nil {
			chains = append(chains, certs)
		}
	}
	set, err := Collect(response.GetCrl(), Authorities(bundle, chains, now))
	w.mu.Lock()
	defer w.mu.Unlock()
	// Serials only ever join a CRL while their SVID is unexpired; keep what verified.
	w.set, w.lastErr = set, err
	select {
	case <-w.ready:
	default:
		close(w.ready)
	}
}
