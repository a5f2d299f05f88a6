// Package verify is what a Go mTLS service needs to accept AI agents that act for someone:
// the caller's SPIFFE ID and delegation, read once per connection from the peer certificate,
// and Authorize, run on every request, which refuses with the codes and in the order of
// docs/DELEGATION.md §5, exactly as the Rust mandate-verify crate does.
package verify

import "fmt"

// The stable refusal codes (DELEGATION.md §5), shared with the Rust and Python verifiers.
const (
	CodeNoPeerCertificate   = "no_peer_certificate"
	CodeNoSpiffeID          = "no_spiffe_id"
	CodeDelegationMalformed = "delegation_malformed"
	CodeDelegationRequired  = "delegation_required"
	CodeStatusUnavailable   = "status_unavailable"
	CodeStatusStale         = "status_stale"
	CodeTaskClosed          = "task_closed"
	CodeCertificateRevoked  = "certificate_revoked"
	CodeDeadlinePassed      = "deadline_passed"
	CodeDepthExceeded       = "depth_exceeded"
	CodeChainTooLong        = "chain_too_long"
	CodeActionNotGranted    = "action_not_granted"
	CodeNoValueLimit        = "no_value_limit"
	CodeCurrencyMismatch    = "currency_mismatch"
	CodeOverValueLimit      = "over_value_limit"
)

// Refusal names the rule that refused a caller or a request, and why.
type Refusal struct {
	// Code is one of the Code constants.
	Code string
	// Reason is one line for a person.
	Reason string
}

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Error is the reason.
func (r *Refusal) Error() string { return r.Reason }

// JSON is the body a service returns: {"refused": code, "reason": text}.
func (r *Refusal) JSON() map[string]any {
	return map[string]any{"refused": r.Code, "reason": r.Reason}
}
