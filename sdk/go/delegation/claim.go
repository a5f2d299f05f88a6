// The JWT-SVID `delegation` claim (DESIGN 3.3, DELEGATION.md §3): the DER structure mirrored in
// snake_case JSON, times as unix seconds, optional members omitted when absent.

package delegation

import (
	"encoding/json"
	"fmt"
	"time"
)

type claimJSON struct {
	Principal  *principalJSON  `json:"principal"`
	Task       *taskJSON       `json:"task"`
	Actions    *[]string       `json:"actions"`
	ValueLimit *valueLimitJSON `json:"value_limit,omitempty"`
	Approval   *approvalJSON   `json:"approval,omitempty"`
	Chain      []linkJSON      `json:"chain,omitempty"`
}

type principalJSON struct {
	Kind *string `json:"kind"`
	ID   *string `json:"id"`
}

type taskJSON struct {
	ID       *string `json:"id"`
	Purpose  *string `json:"purpose"`
	Deadline *int64  `json:"deadline"`
	Depth    *uint8  `json:"depth"`
	MaxDepth *uint8  `json:"max_depth"`
}

type valueLimitJSON struct {
	AmountMinor *int64  `json:"amount_minor"`
	Currency    *string `json:"currency"`
}

type approvalJSON struct {
	Approver   *string `json:"approver"`
	ApprovedAt *int64  `json:"approved_at"`
}

type linkJSON struct {
	Principal *principalJSON `json:"principal"`
	TaskID    *string        `json:"task_id"`
	Actor     *string        `json:"actor"`
}

// ParseClaim parses the JSON of a JWT-SVID's `delegation` claim and checks it as ParseDER does.
//
// It fails with ErrMalformed when the JSON has the wrong shape or a required member is missing,
// and ErrLimit when a value is outside DESIGN 3.3.
func ParseClaim(data []byte) (*Delegation, error) {
	var c claimJSON
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%w: claim: %v", ErrMalformed, err)
	}
	if c.Principal == nil || c.Task == nil || c.Actions == nil {
		return nil, malformed("claim needs principal, task and actions")
	}
	t := c.Task
	if t.ID == nil || t.Purpose == nil || t.Deadline == nil || t.Depth == nil || t.MaxDepth == nil {
		return nil, malformed("claim task needs id, purpose, deadline, depth and max_depth")
	}
	if len(*c.Actions) > MaxActions {
		return nil, fmt.Errorf("%w: %d actions, at most %d are allowed", ErrLimit, len(*c.Actions), MaxActions)
	}
	if len(c.Chain) > MaxChain {
		return nil, fmt.Errorf("%w: chain has %d links, expected 1 to %d", ErrLimit, len(c.Chain), MaxChain)
	}
	p, err := c.Principal.parse()
	if err != nil {
		return nil, err
	}
	d := &Delegation{
		Principal: p,
		Task: TaskInfo{ID: *t.ID, Purpose: *t.Purpose, Deadline: time.Unix(*t.Deadline, 0).UTC(),
			Depth: *t.Depth, MaxDepth: *t.MaxDepth},
		Actions: append([]string{}, *c.Actions...),
	}
	if v := c.ValueLimit; v != nil {
		if v.AmountMinor == nil || v.Currency == nil {
			return nil, malformed("claim value_limit needs amount_minor and currency")
		}
		d.ValueLimit = &ValueLimit{AmountMinor: *v.AmountMinor, Currency: *v.Currency}
	}
	if a := c.Approval; a != nil {
		if a.Approver == nil || a.ApprovedAt == nil {
			return nil, malformed("claim approval needs approver and approved_at")
		}
		d.Approval = &Approval{Approver: *a.Approver, ApprovedAt: time.Unix(*a.ApprovedAt, 0).UTC()}
	}
	for _, l := range c.Chain {
		if l.Principal == nil || l.TaskID == nil || l.Actor == nil {
			return nil, malformed("claim chain link needs principal, task_id and actor")
		}
		lp, err := l.Principal.parse()
		if err != nil {
			return nil, err
		}
		d.Chain = append(d.Chain, Link{Principal: lp, TaskID: *l.TaskID, Actor: *l.Actor})
	}
	if err := d.Check(); err != nil {
		return nil, err
	}
	return d, nil
}

func (p *principalJSON) parse() (Principal, error) {
	if p.Kind == nil || p.ID == nil {
		return Principal{}, malformed("claim principal needs kind and id")
	}
	kind, err := ParsePrincipalKind(*p.Kind)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Kind: kind, ID: *p.ID}, nil
}

// MarshalClaim renders the delegation as the JSON of the `delegation` claim.
func (d *Delegation) MarshalClaim() ([]byte, error) {
	str := func(s string) *string { return &s }
	i64 := func(v int64) *int64 { return &v }
	u8 := func(v uint8) *uint8 { return &v }
	pj := func(p Principal) *principalJSON { return &principalJSON{Kind: str(p.Kind.String()), ID: str(p.ID)} }
	actions := append([]string{}, d.Actions...)
	c := claimJSON{
		Principal: pj(d.Principal),
		Task: &taskJSON{ID: str(d.Task.ID), Purpose: str(d.Task.Purpose), Deadline: i64(d.Task.Deadline.Unix()),
			Depth: u8(d.Task.Depth), MaxDepth: u8(d.Task.MaxDepth)},
		Actions: &actions,
	}
	if v := d.ValueLimit; v != nil {
		c.ValueLimit = &valueLimitJSON{AmountMinor: i64(v.AmountMinor), Currency: str(v.Currency)}
	}
	if a := d.Approval; a != nil {
		c.Approval = &approvalJSON{Approver: str(a.Approver), ApprovedAt: i64(a.ApprovedAt.Unix())}
	}
	for _, l := range d.Chain {
		c.Chain = append(c.Chain, linkJSON{Principal: pj(l.Principal), TaskID: str(l.TaskID), Actor: str(l.Actor)})
	}
	return json.Marshal(c)
}

// FromJWTClaims reads the `delegation` claim from a JWT-SVID's claims, such as
// go-spiffe's jwtsvid.SVID.Claims. It returns (nil, nil) when the claim is absent, and fails
// as ParseClaim when it is present but malformed.
func FromJWTClaims(claims map[string]any) (*Delegation, error) {
	value, ok := claims["delegation"]
	if !ok {
		return nil, nil
	}
	data, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("%w: claim: %v", ErrMalformed, err)
	}
	return ParseClaim(data)
}
