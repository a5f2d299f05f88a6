// Package delegation decodes, checks and encodes the delegation an SVID carries (DESIGN 3.3,
// docs/DELEGATION.md §2-3): the X.509 extension's DER value and the JWT `delegation` claim.
//
// The decoder is as strict as the Rust decoder in mandate-core: it refuses a version other
// than 1, trailing bytes, any encoding that is not the one canonical DER of the value, and
// values outside the sizes of DESIGN 3.3. The golden and malformed vectors under
// core/tests/data/ are shared by the Rust, Go and Python decoders.
package delegation

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// OID is the delegation extension's OID, as text (a GUID-based arc: a `2.25.<uuid>` OID breaks
// Go's parser).
const OID = "1.2.840.113556.1.8000.2554.59017.18993.23044.17922.41336.3076546.14707388.1"

// Limits of DESIGN 3.3 and mandate-core.
const (
	// Version is the only version written and accepted.
	Version = 1
	// MaxChain is the most links a chain may hold.
	MaxChain = 8
	// MaxActions is the most actions a delegation may grant.
	MaxActions = 64
	// MaxDERLen is the largest extension value accepted, in bytes.
	MaxDERLen = 64 * 1024
	// MaxPrincipalIDLen is the longest principal id, in bytes.
	MaxPrincipalIDLen = 256
	// MaxTaskIDLen is the longest task id, in characters.
	MaxTaskIDLen = 64
	// MaxPurposeLen is the longest purpose, in bytes.
	MaxPurposeLen = 256
	// MaxActionLen is the longest action name, in bytes.
	MaxActionLen = 128
)

// Errors a decoder returns; each is wrapped with the detail, so test with errors.Is.
var (
	// ErrMalformed: the DER or JSON is malformed, truncated, mis-tagged or has trailing bytes.
	ErrMalformed = errors.New("malformed delegation")
	// ErrNonCanonical: the DER decodes but is not the canonical encoding of its value.
	ErrNonCanonical = errors.New("delegation DER is not canonical")
	// ErrTooLarge: the input is larger than MaxDERLen.
	ErrTooLarge = errors.New("delegation is larger than 65536 bytes")
	// ErrVersion: the version is not 1.
	ErrVersion = errors.New("unsupported delegation version")
	// ErrLimit: a value is outside the sizes and character sets of DESIGN 3.3.
	ErrLimit = errors.New("delegation value out of range")
	// ErrCertificate: the certificate carries the extension twice, or as critical.
	ErrCertificate = errors.New("bad delegation extension")
)

// PrincipalKind is `ENUMERATED { user(0), application(1), workload(2) }`.
type PrincipalKind int

// The principal kinds.
const (
	User        PrincipalKind = 0
	Application PrincipalKind = 1
	Workload    PrincipalKind = 2
)

// String is the JSON name: user, application or workload.
func (k PrincipalKind) String() string {
	switch k {
	case User:
		return "user"
	case Application:
		return "application"
	case Workload:
		return "workload"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ParsePrincipalKind parses a JSON kind name; it fails for anything but the three names.
func ParsePrincipalKind(name string) (PrincipalKind, error) {
	switch name {
	case "user":
		return User, nil
	case "application":
		return Application, nil
	case "workload":
		return Workload, nil
	}
	return 0, fmt.Errorf("%w: unknown principal kind %q", ErrLimit, name)
}

// Principal is who an agent acts for. ID holds no prefix; a workload's ID is its SPIFFE ID.
type Principal struct {
	Kind PrincipalKind
	ID   string
}

// String is the text form: `user:<id>`, `app:<id>` or the SPIFFE ID.
func (p Principal) String() string {
	switch p.Kind {
	case User:
		return "user:" + p.ID
	case Application:
		return "app:" + p.ID
	}
	return p.ID
}

// TaskInfo is the task an SVID acts under.
type TaskInfo struct {
	ID       string
	Purpose  string
	Deadline time.Time // whole seconds, UTC
	Depth    uint8
	MaxDepth uint8
}

// Approval records who approved the task and when.
type Approval struct {
	Approver   string
	ApprovedAt time.Time
}

// Link is an earlier hop of a chain (audit only).
type Link struct {
	Principal Principal
	TaskID    string
	Actor     string // usually a SPIFFE ID; ASCII
}

// Delegation is the principal an agent acts for, the task, and what it may do.
type Delegation struct {
	Principal  Principal
	Task       TaskInfo
	Actions    []string // exact-match action names
	ValueLimit *ValueLimit
	Approval   *Approval
	Chain      []Link // oldest first; empty when direct
}

// Allows reports whether action is granted (byte-for-byte).
func (d *Delegation) Allows(action string) bool {
	for _, a := range d.Actions {
		if a == action {
			return true
		}
	}
	return false
}

// Check applies every limit of DESIGN 3.3 that the types alone do not guarantee. Both decoders
// call it; call it on a Delegation built by hand before encoding it.
func (d *Delegation) Check() error {
	if err := checkPrincipal(d.Principal); err != nil {
		return err
	}
	if err := checkTaskID(d.Task.ID); err != nil {
		return err
	}
	if !utf8.ValidString(d.Task.Purpose) || len(d.Task.Purpose) > MaxPurposeLen {
		return fmt.Errorf("%w: purpose is longer than %d bytes", ErrLimit, MaxPurposeLen)
	}
	if d.Task.Depth > d.Task.MaxDepth {
		return fmt.Errorf("%w: depth %d exceeds max depth %d", ErrLimit, d.Task.Depth, d.Task.MaxDepth)
	}
	if len(d.Actions) > MaxActions {
		return fmt.Errorf("%w: %d actions, at most %d are allowed", ErrLimit, len(d.Actions), MaxActions)
	}
	for _, a := range d.Actions {
		if err := CheckAction(a); err != nil {
			return err
		}
	}
	if d.ValueLimit != nil && !validCurrency(d.ValueLimit.Currency) {
		return fmt.Errorf("%w: currency %q is not an ISO 4217 code", ErrLimit, d.ValueLimit.Currency)
	}
	if d.Approval != nil && !utf8.ValidString(d.Approval.Approver) {
		return fmt.Errorf("%w: approver is not UTF-8", ErrLimit)
	}
	if len(d.Chain) > MaxChain {
		return fmt.Errorf("%w: chain has %d links, expected 1 to %d", ErrLimit, len(d.Chain), MaxChain)
	}
	for _, l := range d.Chain {
		if err := checkPrincipal(l.Principal); err != nil {
			return err
		}
		if err := checkTaskID(l.TaskID); err != nil {
			return err
		}
		for i := 0; i < len(l.Actor); i++ {
			if l.Actor[i] >= 0x80 {
				return fmt.Errorf("%w: chain actor is not ASCII", ErrLimit)
			}
		}
	}
	return nil
}

// CheckAction fails when name is empty, over 128 bytes, or holds whitespace or a control
// character (the rule of mandate-core's Action).
func CheckAction(name string) error {
	if name == "" || len(name) > MaxActionLen || !utf8.ValidString(name) ||
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%w: bad action name %q", ErrLimit, name)
	}
	return nil
}

func checkPrincipal(p Principal) error {
	switch {
	case p.Kind < User || p.Kind > Workload:
		return fmt.Errorf("%w: unknown principal kind %d", ErrLimit, int(p.Kind))
	case p.ID == "":
		return fmt.Errorf("%w: principal id is empty", ErrLimit)
	case len(p.ID) > MaxPrincipalIDLen:
		return fmt.Errorf("%w: principal id is longer than %d bytes", ErrLimit, MaxPrincipalIDLen)
	case !utf8.ValidString(p.ID) || strings.IndexFunc(p.ID, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: principal id contains a control character", ErrLimit)
	}
	if p.Kind == Workload {
		id, err := spiffeid.FromString(p.ID)
		if err != nil {
			return fmt.Errorf("%w: workload principal is not a valid SPIFFE ID: %v", ErrLimit, err)
		}
		if id.String() != p.ID {
			return fmt.Errorf("%w: workload principal %q is not in canonical form", ErrNonCanonical, p.ID)
		}
	}
	return nil
}

// checkTaskID applies mandate-core's TaskId rule: 1 to 64 characters of [A-Za-z0-9._:-].
func checkTaskID(id string) error {
	if id == "" || len(id) > MaxTaskIDLen {
		return fmt.Errorf("%w: task id must be 1 to %d characters", ErrLimit, MaxTaskIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-' || c == ':'
		if !ok {
			return fmt.Errorf("%w: task id %q holds a character outside [A-Za-z0-9._:-]", ErrLimit, id)
		}
	}
	return nil
}
