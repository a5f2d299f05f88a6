// Package taskstatus follows the local agent's closed-task feed,
// `mandate.delegation.v1.TaskStatus/Watch` (DESIGN 3.4), and answers, fail closed, whether a
// task may still be served.
//
// A goroutine subscribes over the agent's unix socket with the `workload.spiffe.io: true`
// header and reconnects with exponential backoff. Checks read the newest snapshot and refuse
// every task once that snapshot's as_of_unix_ms is older than the staleness bound: staleness
// counts from as_of, not from arrival, so a verifier whose agent lost the server fails closed.
package taskstatus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/mandate-dev/mandate/sdk/go/gen/delegationv1"
)

// DefaultStaleness is the staleness bound of DESIGN 3.4.
const DefaultStaleness = 15 * time.Second

// Errors of Check. A stale view fails with a *StaleError, which matches ErrStale.
var (
	// ErrUnavailable: no snapshot has arrived from the agent yet.
	ErrUnavailable = errors.New("task status unavailable: no snapshot from the agent yet")
	// ErrStale: the newest snapshot is older than the staleness bound.
	ErrStale = errors.New("task status is stale")
	// ErrClosed: the task is in the closed set.
	ErrClosed = errors.New("task is closed")
)

// StaleError says how old the newest snapshot is.
type StaleError struct {
	Age   time.Duration
	Bound time.Duration
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("task status is stale: newest snapshot is %d ms old (bound %d ms)",
		e.Age.Milliseconds(), e.Bound.Milliseconds())
}

// Is makes errors.Is(err, ErrStale) hold.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Snapshot is one closed-task set as the agent sent it.
type Snapshot struct {
	ClosedTaskIDs map[string]struct{}
	Sequence      uint64
	AsOf          time.Time // when the agent last heard from the server
}

// FromWire converts a received snapshot.
func FromWire(s *pb.TaskStatusSnapshot) *Snapshot {
	closed := make(map[string]struct{}, len(s.GetClosedTaskIds()))
	for _, id := range s.GetClosedTaskIds() {
		closed[id] = struct{}{}
	}
	asOf := time.UnixMilli(max(s.GetAsOfUnixMs(), 0))
	return &Snapshot{ClosedTaskIDs: closed, Sequence: s.GetSequence(), AsOf: asOf}
}

// CheckSnapshot is the pure decision behind Watcher.Check: no snapshot fails with
// ErrUnavailable, one whose AsOf is more than staleness before now with a *StaleError, and a
// listed task with ErrClosed. A snapshot from the future (clock skew) counts as age zero.
func CheckSnapshot(s *Snapshot, staleness time.Duration, taskID string, now time.Time) error {
	if s == nil {
		return ErrUnavailable
	}
	age := max(now.Sub(s.AsOf), 0)
	if age > staleness {
		return &StaleError{Age: age, Bound: staleness}
	}
	if _, closed := s.ClosedTaskIDs[taskID]; closed {
		return fmt.Errorf("%w: %s", ErrClosed, taskID)
	}
	return nil
}

// SocketPathFromEndpoint turns `unix:///p`, `unix:/p` or `/p` into a socket path; it fails for
// any other form (the feed is served on a unix socket only).
func SocketPathFromEndpoint(endpoint string) (string, error) {
	path := endpoint
	if p, ok := strings.CutPrefix(endpoint, "unix://"); ok {
		path = p
	} else if p, ok := strings.CutPrefix(endpoint, "unix:"); ok {
		path = p
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("endpoint %q is not a unix socket address", endpoint)
	}
	return path, nil
}

// Config says where the feed is and how to follow it.
type Config struct {
	// SocketPath is the agent's Workload API socket.
	SocketPath string
	// Staleness is the bound; zero means DefaultStaleness.
	Staleness time.Duration
	// InitialBackoff is the first reconnect delay (zero: 100 ms); it doubles up to MaxBackoff.
	InitialBackoff time.Duration
	// MaxBackoff is the largest reconnect delay (zero: 2 s).
	MaxBackoff time.Duration
}

// Watcher is a live subscription to the feed. Close stops it.
type Watcher struct {
	staleness time.Duration
	cancel    context.CancelFunc
	done      chan struct{}

	mu     sync.Mutex
	latest *Snapshot
	ready  chan struct{} // closed when the first snapshot arrives
}

// Start begins following the feed in a goroutine and returns at once; until the first
// snapshot arrives every check fails with ErrUnavailable.
func Start(config Config) *Watcher {
	if config.Staleness <= 0 {
		config.Staleness = DefaultStaleness
	}
	if config.InitialBackoff <= 0 {
		config.InitialBackoff = 100 * time.Millisecond
	}
	if config.MaxBackoff <= 0 {
		config.MaxBackoff = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{staleness: config.Staleness, cancel: cancel, done: make(chan struct{}), ready: make(chan struct{})}
	go w.follow(ctx, config)
	return w
}

// Check reports whether taskID may be served at now; see CheckSnapshot.
func (w *Watcher) Check(taskID string, now time.Time) error {
	return CheckSnapshot(w.Latest(), w.staleness, taskID, now)
}

// Latest is the newest snapshot, or nil before the first.
func (w *Watcher) Latest() *Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

// Staleness is the configured bound.
func (w *Watcher) Staleness() time.Duration { return w.staleness }

// WaitReady waits until a snapshot has arrived or timeout passes; it reports whether one did.
func (w *Watcher) WaitReady(timeout time.Duration) bool {
	select {
	case <-w.ready:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close stops following the feed and waits for the goroutine to end.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

func (w *Watcher) publish(s *Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		close(w.ready)
	}
	w.latest = s
}

// follow connects, streams and reconnects with backoff until ctx ends.
func (w *Watcher) follow(ctx context.Context, config Config) {
	defer close(w.done)
	backoff := config.InitialBackoff
	for {
		if received, _ := w.streamOnce(ctx, config.SocketPath); received {
			backoff = config.InitialBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, config.MaxBackoff)
	}
}

// streamOnce opens one Watch stream and publishes its snapshots; it reports whether any came.
func (w *Watcher) streamOnce(ctx context.Context, socketPath string) (bool, error) {
	conn, err := Dial(socketPath)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stream, err := pb.NewTaskStatusClient(conn).Watch(WithWorkloadHeader(ctx), &pb.WatchRequest{})
	if err != nil {
		return false, err
	}
	received := false
	for {
		snapshot, err := stream.Recv()
		if err != nil {
			return received, err
		}
		received = true
		w.publish(FromWire(snapshot))
	}
}

// MaxFeedMessage is the largest message accepted from the agent: the closed set of a trust
// domain with 100k closed tasks is about 4 MB, over gRPC's 4 MiB default.
const MaxFeedMessage = 64 * 1024 * 1024

// Dial opens a gRPC client connection to the agent's unix socket (no TLS: the agent attests
// the caller from the socket's peer credentials).
func Dial(socketPath string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxFeedMessage)))
}

// WithWorkloadHeader adds the `workload.spiffe.io: true` metadata every agent call needs.
func WithWorkloadHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}
