package taskstatus

import (
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/mandate-dev/mandate/sdk/go/gen/delegationv1"
)

func TestCheckSnapshotTable(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	bound := 15 * time.Second
	snap := func(asOf time.Time, closed ...string) *Snapshot {
		s := &Snapshot{ClosedTaskIDs: map[string]struct{}{}, AsOf: asOf}
		for _, id := range closed {
			s.ClosedTaskIDs[id] = struct{}{}
		}
		return s
	}
	cases := []struct {
		name string
		s    *Snapshot
		want error
	}{
		{"none yet", nil, ErrUnavailable},
		{"fresh", snap(now.Add(-time.Second)), nil},
		{"at the bound", snap(now.Add(-bound)), nil},
		{"just past the bound", snap(now.Add(-bound - time.Millisecond)), ErrStale},
		{"from the future", snap(now.Add(time.Minute)), nil},
		{"closed", snap(now, "t-1"), ErrClosed},
		{"stale beats closed", snap(now.Add(-time.Minute), "t-1"), ErrStale},
		{"other task closed", snap(now, "t-2"), nil},
	}
	for _, c := range cases {
		err := CheckSnapshot(c.s, bound, "t-1", now)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestEndpointForms(t *testing.T) {
	for in, want := range map[string]string{"unix:///a/b.sock": "/a/b.sock", "unix:/a": "/a", "/a": "/a"} {
		if got, err := SocketPathFromEndpoint(in); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"tcp://127.0.0.1:1", "unix://relative", ""} {
		if _, err := SocketPathFromEndpoint(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// feed is a fake agent: it refuses calls without the workload header and streams what the
// test puts on its channel.
type feed struct {
	pb.UnimplementedTaskStatusServer
	snapshots chan *pb.TaskStatusSnapshot
}

func (f *feed) Watch(_ *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.TaskStatusSnapshot]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing")
	}
	for {
		select {
		case s := <-f.snapshots:
			if err := stream.Send(s); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func serve(t *testing.T, path string, f *feed) *grpc.Server {
	t.Helper()
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	pb.RegisterTaskStatusServer(server, f)
	go func() { _ = server.Serve(listener) }()
	return server
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherFollowsFailsClosedAndReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	f := &feed{snapshots: make(chan *pb.TaskStatusSnapshot, 4)}
	server := serve(t, path, f)
	w := Start(Config{SocketPath: path, Staleness: 2 * time.Second, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	defer w.Close()
	if err := w.Check("t-1", time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("before any snapshot: %v", err)
	}
	f.snapshots <- &pb.TaskStatusSnapshot{Sequence: 1, AsOfUnixMs: time.Now().UnixMilli()}
	if !w.WaitReady(5 * time.Second) {
		t.Fatal("no snapshot arrived")
	}
	if err := w.Check("t-1", time.Now()); err != nil {
		t.Fatalf("fresh and open: %v", err)
	}
	f.snapshots <- &pb.TaskStatusSnapshot{ClosedTaskIds: []string{"t-1"}, Sequence: 2, AsOfUnixMs: time.Now().UnixMilli()}
	eventually(t, "t-1 closed", func() bool { return errors.Is(w.Check("t-1", time.Now()), ErrClosed) })
	// Staleness counts from as_of: a snapshot that arrives now but says the agent last heard
	// from the server 3 s ago is already stale.
	f.snapshots <- &pb.TaskStatusSnapshot{Sequence: 3, AsOfUnixMs: time.Now().Add(-3 * time.Second).UnixMilli()}
	eventually(t, "stale", func() bool { return errors.Is(w.Check("t-2", time.Now()), ErrStale) })

	// The agent goes away and comes back on the same path: the watcher reconnects.
	server.Stop()
	f2 := &feed{snapshots: make(chan *pb.TaskStatusSnapshot, 4)}
	server2 := serve(t, path, f2)
	defer server2.Stop()
	f2.snapshots <- &pb.TaskStatusSnapshot{Sequence: 4, AsOfUnixMs: time.Now().UnixMilli()}
	eventually(t, "reconnected", func() bool { s := w.Latest(); return s != nil && s.Sequence == 4 })
	if err := w.Check("t-1", time.Now()); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
	// With no heartbeat, the view goes stale by the bound, on the verifier's clock.
	if err := w.Check("t-1", time.Now().Add(3*time.Second)); !errors.Is(err, ErrStale) {
		t.Fatalf("3 s later without a heartbeat: %v", err)
	}
}
