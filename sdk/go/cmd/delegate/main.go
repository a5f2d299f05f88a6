// Command delegate is a delegating agent's two calls (DESIGN 3.8) with the subtask package,
// run as the workload that holds the task-bound SVID:
//
//	delegate open  --endpoint unix:///tmp/agent.sock --target-id spiffe://example.org/ai/search \
//	               --action po.read --value-limit 50.00:EUR --deadline 30m --purpose "find suppliers"
//	delegate close --endpoint unix:///tmp/agent.sock --task-id <SUB_TASK_ID> --reason done
//
// Each prints the sub-task as one JSON line ({"task_id", "parent_id", "deadline_unix",
// "depth"}). A refusal exits 1 with one line on stderr (the agent's gRPC status) and nothing on
// stdout; a usage error exits 64.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mandate-dev/mandate/sdk/go/subtask"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "open" && os.Args[1] != "close") {
		fmt.Fprintln(os.Stderr, "usage: delegate open|close [flags] (see -h of each)")
		os.Exit(64)
	}
	command := os.Args[1]
	flags := flag.NewFlagSet(command, flag.ContinueOnError)
	endpoint := flags.String("endpoint", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "the agent's Workload API socket (unix:///path)")
	delegator := flags.String("delegator-id", "", "which of this workload's SVIDs delegates (empty: its only task-bound one)")
	delegatorTask := flags.String("delegator-task-id", "", "which task delegates, when the delegator holds several")
	target := flags.String("target-id", "", "open: the SPIFFE ID of the delegate entry")
	purpose := flags.String("purpose", "", "open: the sub-task's purpose")
	var actions list
	flags.Var(&actions, "action", "open: an action to grant (repeatable; a subset of the delegator's)")
	limit := flags.String("value-limit", "", "open: <amount>:<CODE> (empty: the delegator's)")
	deadline := flags.Duration("deadline", 0, "open: how long from now (0: the delegator's deadline)")
	taskID := flags.String("task-id", "", "close: the sub-task to close")
	reason := flags.String("reason", "", "close: why")
	if err := flags.Parse(os.Args[2:]); err != nil {
		os.Exit(64)
	}
	if err := run(*endpoint, func(ctx context.Context, c *subtask.Client) (*subtask.Subtask, error) {
		if command == "close" {
			return c.CloseSubtask(ctx, *delegator, *taskID, *reason)
		}
		request := subtask.Request{DelegatorID: *delegator, DelegatorTaskID: *delegatorTask, TargetID: *target,
			Purpose: *purpose, Actions: actions, ValueLimit: *limit}
		if *deadline > 0 {
			request.Deadline = time.Now().Add(*deadline)
		}
		return c.Open(ctx, request)
	}); err != nil {
		fmt.Fprintf(os.Stderr, "delegate %s: %v\n", command, err)
		os.Exit(1)
	}
}

func run(endpoint string, call func(context.Context, *subtask.Client) (*subtask.Subtask, error)) error {
	client, err := subtask.Dial(endpoint)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := call(ctx, client)
	if err != nil {
		return err
	}
	line, err := json.Marshal(map[string]any{"task_id": sub.TaskID, "parent_id": sub.ParentID,
		"deadline_unix": sub.Deadline.Unix(), "depth": sub.Depth})
	if err != nil {
		return err
	}
	fmt.Println(string(line))
	return nil
}
