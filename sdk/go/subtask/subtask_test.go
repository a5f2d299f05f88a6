package subtask

import (
	"context"
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

// fakeAgent checks the header and records the request it got.
type fakeAgent struct {
	pb.UnimplementedDelegationServer
	open  *pb.OpenSubtaskRequest
	close *pb.CloseSubtaskRequest
}

func header(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing")
	}
	return nil
}

func (f *fakeAgent) OpenSubtask(ctx context.Context, r *pb.OpenSubtaskRequest) (*pb.Subtask, error) {
	if err := header(ctx); err != nil {
		return nil, err
	}
	if len(r.Actions) > 1 {
		return nil, status.Error(codes.PermissionDenied, "action po.submit is not one of the delegator's actions")
	}
	f.open = r
	return &pb.Subtask{TaskId: "task-sub-1", ParentId: "task-4711", DeadlineUnix: r.DeadlineUnix, Depth: 1}, nil
}

func (f *fakeAgent) CloseSubtask(ctx context.Context, r *pb.CloseSubtaskRequest) (*pb.Subtask, error) {
	if err := header(ctx); err != nil {
		return nil, err
	}
	f.close = r
	return &pb.Subtask{TaskId: r.TaskId, ParentId: "task-4711", Depth: 1}, nil
}

func TestOpenAndCloseOverTheAgentSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	listener, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	agent := &fakeAgent{}
	server := grpc.NewServer()
	pb.RegisterDelegationServer(server, agent)
	go func() { _ = server.Serve(listener) }()
	defer server.Stop()

	client, err := Dial("unix://" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deadline := time.Unix(1_800_000_000, 0)
	sub, err := client.Open(ctx, Request{TargetID: "spiffe://example.org/ai/search", Purpose: "find suppliers",
		Actions: []string{"po.read"}, ValueLimit: "100.00:EUR", Deadline: deadline})
	if err != nil {
		t.Fatal(err)
	}
	if sub.TaskID != "task-sub-1" || sub.ParentID != "task-4711" || sub.Depth != 1 || !sub.Deadline.Equal(deadline) {
		t.Fatalf("subtask %+v", sub)
	}
	if agent.open.TargetId != "spiffe://example.org/ai/search" || agent.open.ValueLimit != "100.00:EUR" || agent.open.DeadlineUnix != deadline.Unix() {
		t.Fatalf("request %+v", agent.open)
	}
	_, err = client.Open(ctx, Request{TargetID: "x", Actions: []string{"po.read", "po.submit"}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("wider request: %v", err)
	}
	closed, err := client.CloseSubtask(ctx, "", "task-sub-1", "done")
	if err != nil || closed.TaskID != "task-sub-1" || agent.close.Reason != "done" {
		t.Fatalf("close: %v %+v", err, closed)
	}
	if _, err := Dial("tcp://127.0.0.1:1"); err == nil {
		t.Fatal("a tcp endpoint was accepted")
	}
}
