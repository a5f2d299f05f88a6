// Routes, the per-connection caller, and the JSON answers of the purchase-order service.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mandate-dev/mandate/sdk/go/delegation"
	"github.com/mandate-dev/mandate/sdk/go/verify"
)

// actionFor is the action a request means, or "" for a route the service does not serve
// (examples/src/lib.rs): POST /po/{draft,approve,submit,read}, and GET /po/<number> is po.read.
func actionFor(method, path string) string {
	rest, ok := strings.CutPrefix(path, "/po/")
	if !ok {
		return ""
	}
	switch {
	case method == "POST" && rest == "draft":
		return "po.draft"
	case method == "POST" && rest == "approve":
		return "po.approve"
	case method == "POST" && rest == "submit":
		return "po.submit"
	case method == "POST" && rest == "read":
		return "po.read"
	case method == "GET" && rest != "" && strings.Trim(rest, "0123456789") == "":
		return "po.read"
	}
	return ""
}

// connection is what the service knows of one TLS connection: its number, and its caller,
// read once from the handshake on the first request.
type connection struct {
	number  uint64
	once    sync.Once
	caller  *verify.Caller
	refusal *verify.Refusal
}

type connectionKey struct{}

var connections atomic.Uint64

func newConnection(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connectionKey{}, &connection{number: connections.Add(1)})
}

type service struct {
	verifier *verify.Verifier
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, _ := r.Context().Value(connectionKey{}).(*connection)
	if conn == nil {
		conn = &connection{}
	}
	action := actionFor(r.Method, r.URL.Path)
	if action == "" {
		reply(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	}
	amount, problem := parseAmount(body)
	if problem != "" {
		reply(w, http.StatusBadRequest, map[string]any{"error": problem})
		return
	}
	conn.once.Do(func() {
		conn.caller, conn.refusal = verify.CallerFromConnectionState(r.TLS, s.verifier.Policy())
		if conn.refusal != nil {
			log.Printf("connection %d from a refused identity: %s", conn.number, conn.refusal.Reason)
		} else {
			log.Printf("connection %d caller=%s delegated=%v", conn.number, conn.caller.ID, conn.caller.Delegation != nil)
		}
	})
	if conn.refusal != nil {
		log.Printf("refused %s: %s: %s", action, conn.refusal.Code, conn.refusal.Reason)
		refuse(w, conn.refusal, conn.number)
		return
	}
	principal, task, hops := "-", "-", ""
	if d := conn.caller.Delegation; d != nil {
		principal, task = d.Principal.String(), d.Task.ID
		hops = fmt.Sprintf(" depth=%d/%d chain=%d", d.Task.Depth, d.Task.MaxDepth, len(d.Chain))
	}
	amountText := "-"
	var amountJSON any
	if amount != nil {
		amountText, amountJSON = amount.String(), amount.String()
	}
	if refusal := s.verifier.Authorize(conn.caller, action, amount); refusal != nil {
		log.Printf("refused principal=%s task=%s action=%s amount=%s: %s: %s", principal, task, action, amountText, refusal.Code, refusal.Reason)
		refuse(w, refusal, conn.number)
		return
	}
	log.Printf("allowed principal=%s task=%s%s action=%s amount=%s caller=%s", principal, task, hops, action, amountText, conn.caller.ID)
	answer := map[string]any{"ok": true, "action": action, "principal": principal, "task": task,
		"amount": amountJSON, "connection": conn.number}
	// A sub-task's caller (DESIGN 3.8): its depth and who delegated to whom, oldest first.
	if d := conn.caller.Delegation; d != nil && len(d.Chain) > 0 {
		chain := make([]map[string]string, 0, len(d.Chain))
		for _, link := range d.Chain {
			chain = append(chain, map[string]string{"task": link.TaskID, "actor": link.Actor})
		}
		answer["depth"], answer["chain"] = d.Task.Depth, chain
	}
	reply(w, http.StatusOK, answer)
}

// parseAmount reads {"amount": "120.00:EUR"}; an empty body or no amount means none. It
// returns the problem text of a 400 answer.
func parseAmount(body []byte) (*delegation.ValueLimit, string) {
	if strings.TrimSpace(string(body)) == "" {
		return nil, ""
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return nil, fmt.Sprintf("body is not JSON: %v", err)
	}
	object, _ := value.(map[string]any)
	raw, ok := object["amount"]
	if !ok || raw == nil {
		return nil, ""
	}
	text, ok := raw.(string)
	if !ok {
		shown, _ := json.Marshal(raw)
		return nil, fmt.Sprintf("amount must be a string like \"120.00:EUR\", got %s", shown)
	}
	limit, err := delegation.ParseValueLimit(text)
	if err != nil {
		return nil, fmt.Sprintf("bad amount %q: %v", text, err)
	}
	return &limit, ""
}

// refuse answers 403 with the typed reason and the connection number.
func refuse(w http.ResponseWriter, r *verify.Refusal, connection uint64) {
	body := r.JSON()
	body["connection"] = connection
	reply(w, http.StatusForbidden, body)
}

func reply(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A map of strings, numbers and bools always encodes.
	_ = json.NewEncoder(w).Encode(body)
}
