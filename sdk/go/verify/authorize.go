// Per-request authorization: task status, revocation, deadline, depth, action and amount,
// checked on every request rather than only at the handshake (DESIGN 3.4, DELEGATION.md §5).

package verify

import (
	"errors"
	"math/big"
	"time"

	"github.com/mandate-dev/mandate/sdk/go/crl"
	"github.com/mandate-dev/mandate/sdk/go/delegation"
	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
)

// StatusView is the task-status check a Verifier needs; *taskstatus.Watcher is one.
type StatusView interface {
	Check(taskID string, now time.Time) error
}

// RevocationView checks a certificate serial against the trust domain's CRLs; *crl.Watcher is
// one. Check fails with crl.ErrRevoked for a listed serial, and any other error (crl.ErrUnavailable
// before the CRLs arrive) fails a delegated caller closed.
type RevocationView interface {
	Check(serial *big.Int) error
}

// Verifier checks callers against a policy, the live task-status view and, optionally, the
// trust domain's CRLs.
type Verifier struct {
	policy  Policy
	status  StatusView
	revoked RevocationView
}

// New is a verifier with policy, the task-status view status, and revoked (nil: no CRL check).
func New(policy Policy, status StatusView, revoked RevocationView) *Verifier {
	return &Verifier{policy: policy, status: status, revoked: revoked}
}

// Policy is the delegation policy, for CallerFromCertificate.
func (v *Verifier) Policy() Policy { return v.policy }

// Authorize checks one request of caller for action with an optional amount, now.
func (v *Verifier) Authorize(caller *Caller, action string, amount *delegation.ValueLimit) *Refusal {
	return v.AuthorizeAt(caller, action, amount, time.Now())
}

// AuthorizeAt is Authorize at a given time. It returns nil when the request is allowed, else
// the refusal of the first rule that failed, in this order: status_unavailable, status_stale,
// task_closed, certificate_revoked (status_unavailable while no CRLs arrived), deadline_passed, depth_exceeded, chain_too_long,
// action_not_granted, no_value_limit, currency_mismatch, over_value_limit. A caller without a
// delegation is refused only when policy requires one (delegation_required) or its
// certificate is revoked; the service applies its own rules to the rest.
func (v *Verifier) AuthorizeAt(caller *Caller, action string, amount *delegation.ValueLimit, now time.Time) *Refusal {
	d := caller.Delegation
	if d == nil {
		// Re-checked in case the caller was built by hand.
		if v.policy.RequiresDelegation(caller.ID) {
			return refuse(CodeDelegationRequired, "%s must carry a delegation and carries none", caller.ID)
		}
		// The CRLs list only task SVIDs; a listed serial is refused all the same.
		if r := v.checkRevoked(caller); r != nil && r.Code == CodeCertificateRevoked {
			return r
		}
		return nil
	}
	taskID := d.Task.ID
	if err := v.status.Check(taskID, now); err != nil {
		var stale *taskstatus.StaleError
		switch {
		case errors.As(err, &stale):
			return refuse(CodeStatusStale, "%s", stale.Error())
		case errors.Is(err, taskstatus.ErrClosed):
			return refuse(CodeTaskClosed, "task %s is closed", taskID)
		default:
			return refuse(CodeStatusUnavailable, "task status unavailable: no snapshot from the agent yet")
		}
	}
	if r := v.checkRevoked(caller); r != nil {
		return r
	}
	return CheckGrant(d, action, amount, now)
}

func (v *Verifier) checkRevoked(caller *Caller) *Refusal {
	if v.revoked == nil || caller.Certificate == nil {
		return nil
	}
	switch err := v.revoked.Check(caller.Certificate.SerialNumber); {
	case err == nil:
		return nil
	case errors.Is(err, crl.ErrRevoked):
		return refuse(CodeCertificateRevoked, "certificate serial %x of %s is listed in a CRL of the trust domain",
			caller.Certificate.SerialNumber, caller.ID)
	default:
		return refuse(CodeStatusUnavailable, "task status unavailable: %v", err)
	}
}

// CheckGrant is the pure part of AuthorizeAt: deadline, depth, chain length, action (exact
// match) and amount (a grant with a limit, the same currency, within the limit).
func CheckGrant(d *delegation.Delegation, action string, amount *delegation.ValueLimit, now time.Time) *Refusal {
	task := d.Task
	if !now.Before(task.Deadline) {
		return refuse(CodeDeadlinePassed, "task %s passed its deadline at unix time %d", task.ID, task.Deadline.Unix())
	}
	if task.Depth > task.MaxDepth {
		return refuse(CodeDepthExceeded, "delegation depth %d exceeds the maximum %d", task.Depth, task.MaxDepth)
	}
	if len(d.Chain) > delegation.MaxChain {
		return refuse(CodeChainTooLong, "delegation chain has %d links, at most %d are allowed", len(d.Chain), delegation.MaxChain)
	}
	if !d.Allows(action) {
		return refuse(CodeActionNotGranted, "action %q is not granted by task %s", action, task.ID)
	}
	if amount == nil {
		return nil
	}
	limit := d.ValueLimit
	switch {
	case limit == nil:
		return refuse(CodeNoValueLimit, "an amount of %s was requested but task %s has no value limit", amount, task.ID)
	case amount.Currency != limit.Currency:
		return refuse(CodeCurrencyMismatch, "amount currency %s differs from the value limit currency %s", amount.Currency, limit.Currency)
	case amount.AmountMinor > limit.AmountMinor:
		return refuse(CodeOverValueLimit, "amount %s exceeds the value limit %s", amount, limit)
	}
	return nil
}
