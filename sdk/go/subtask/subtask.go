// Package subtask is the delegating agent's side of DESIGN 3.8: a client of
// `mandate.delegation.v1.Delegation/OpenSubtask` and `CloseSubtask` on the local agent's
// Workload API socket, which hands a narrower sub-task to a delegate workload.
package subtask

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	pb "github.com/mandate-dev/mandate/sdk/go/gen/delegationv1"
	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
)

// Request is what to delegate. Empty fields take the delegator's own value.
type Request struct {
	// DelegatorID picks which of the caller's SVIDs delegates; empty: its only task-bound one.
	DelegatorID string
	// DelegatorTaskID picks the task when the caller holds several for DelegatorID.
	DelegatorTaskID string
	// TargetID is the SPIFFE ID of a delegate entry.
	TargetID string
	// Purpose of the sub-task.
	Purpose string
	// Actions, a subset of the delegator's.
	Actions []string
	// ValueLimit as `<amount>:<CODE>`; empty: the delegator's.
	ValueLimit string
	// Deadline; zero: the delegator's. It may be earlier, never later.
	Deadline time.Time
}

// Subtask is the task the server opened (or closed).
type Subtask struct {
	TaskID   string
	ParentID string
	Deadline time.Time
	Depth    uint32
}

// Client talks to the local agent.
type Client struct {
	conn *grpc.ClientConn
	rpc  pb.DelegationClient
}

// Dial connects to the agent at endpoint (`unix:///path` or a path); it fails for an address
// that is not a unix socket. The connection itself is made on the first call.
func Dial(endpoint string) (*Client, error) {
	path, err := taskstatus.SocketPathFromEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	conn, err := taskstatus.Dial(path)
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	return &Client{conn: conn, rpc: pb.NewDelegationClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Open asks for a sub-task. It fails with the agent's gRPC status: PermissionDenied naming the
// rule the request breaks (wider than the delegator, a target not delegating from it, ...),
// InvalidArgument when the caller holds several task-bound SVIDs and names none.
func (c *Client) Open(ctx context.Context, r Request) (*Subtask, error) {
	var deadline int64
	if !r.Deadline.IsZero() {
		deadline = r.Deadline.Unix()
	}
	reply, err := c.rpc.OpenSubtask(taskstatus.WithWorkloadHeader(ctx), &pb.OpenSubtaskRequest{
		DelegatorId: r.DelegatorID, DelegatorTaskId: r.DelegatorTaskID, TargetId: r.TargetID,
		Purpose: r.Purpose, Actions: r.Actions, ValueLimit: r.ValueLimit, DeadlineUnix: deadline,
	})
	if err != nil {
		return nil, err
	}
	return fromWire(reply), nil
}

// CloseSubtask closes a sub-task the caller opened, with its whole subtree. delegatorID may be empty
// when the caller holds one task-bound SVID. It fails with PermissionDenied for a task the
// caller did not open.
func (c *Client) CloseSubtask(ctx context.Context, delegatorID, taskID, reason string) (*Subtask, error) {
	reply, err := c.rpc.CloseSubtask(taskstatus.WithWorkloadHeader(ctx), &pb.CloseSubtaskRequest{
		DelegatorId: delegatorID, TaskId: taskID, Reason: reason,
	})
	if err != nil {
		return nil, err
	}
	return fromWire(reply), nil
}

func fromWire(s *pb.Subtask) *Subtask {
	return &Subtask{TaskID: s.GetTaskId(), ParentID: s.GetParentId(),
		Deadline: time.Unix(s.GetDeadlineUnix(), 0).UTC(), Depth: s.GetDepth()}
}
