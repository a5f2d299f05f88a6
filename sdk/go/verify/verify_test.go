package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mandate-dev/mandate/sdk/go/crl"
	"github.com/mandate-dev/mandate/sdk/go/delegation"
	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
)

var now = time.Unix(1_800_000_000, 0)

func sample() *delegation.Delegation {
	return &delegation.Delegation{
		Principal:  delegation.Principal{Kind: delegation.User, ID: "alice@example.org"},
		Task:       delegation.TaskInfo{ID: "task-4711", Purpose: "draft PO 4711", Deadline: now.Add(time.Hour), MaxDepth: 1},
		Actions:    []string{"po.draft", "po.read"},
		ValueLimit: &delegation.ValueLimit{AmountMinor: 50000, Currency: "EUR"},
	}
}

// fakeStatus is a StatusView over a fixed snapshot.
type fakeStatus struct{ snapshot *taskstatus.Snapshot }

func (f fakeStatus) Check(taskID string, at time.Time) error {
	return taskstatus.CheckSnapshot(f.snapshot, 15*time.Second, taskID, at)
}

// fakeCRL lists serials; a nil fakeCRL has received no CRLs yet.
type fakeCRL map[int64]bool

func (f fakeCRL) Check(serial *big.Int) error {
	switch {
	case f == nil:
		return crl.ErrUnavailable
	case f[serial.Int64()]:
		return crl.ErrRevoked
	}
	return nil
}

func snapshot(asOf time.Time, closed ...string) *taskstatus.Snapshot {
	s := &taskstatus.Snapshot{ClosedTaskIDs: map[string]struct{}{}, AsOf: asOf}
	for _, id := range closed {
		s.ClosedTaskIDs[id] = struct{}{}
	}
	return s
}

func amount(t *testing.T, text string) *delegation.ValueLimit {
	v, err := delegation.ParseValueLimit(text)
	if err != nil {
		t.Fatal(err)
	}
	return &v
}

func TestAuthorizeRefusesWithEveryCodeInOrder(t *testing.T) {
	agent := spiffeid.RequireFromString("spiffe://example.org/ai/procurement")
	fresh := snapshot(now.Add(-time.Second))
	cert := &x509.Certificate{SerialNumber: big.NewInt(99)}
	type tc struct {
		name    string
		status  *taskstatus.Snapshot
		revoked fakeCRL
		noCRL   bool
		change  func(d *delegation.Delegation)
		action  string
		amount  string
		want    string
	}
	cases := []tc{
		{name: "allowed", action: "po.draft", amount: "120.00:EUR"},
		{name: "allowed at the limit", action: "po.draft", amount: "500.00:EUR"},
		{name: "allowed without amount", action: "po.read"},
		{name: "no snapshot", status: &taskstatus.Snapshot{}, action: "po.draft", want: CodeStatusUnavailable},
		{name: "stale", status: snapshot(now.Add(-16 * time.Second)), action: "po.draft", want: CodeStatusStale},
		{name: "stale before closed", status: snapshot(now.Add(-16*time.Second), "task-4711"), action: "po.draft", want: CodeStatusStale},
		{name: "closed", status: snapshot(now, "task-4711"), action: "po.draft", want: CodeTaskClosed},
		{name: "closed before deadline", status: snapshot(now, "task-4711"), change: func(d *delegation.Delegation) { d.Task.Deadline = now }, action: "po.draft", want: CodeTaskClosed},
		{name: "revoked serial", revoked: fakeCRL{99: true}, action: "po.draft", want: CodeCertificateRevoked},
		{name: "no CRLs yet", noCRL: true, action: "po.draft", want: CodeStatusUnavailable},
		{name: "closed before revoked", status: snapshot(now, "task-4711"), revoked: fakeCRL{99: true}, action: "po.draft", want: CodeTaskClosed},
		{name: "revoked before deadline", revoked: fakeCRL{99: true}, change: func(d *delegation.Delegation) { d.Task.Deadline = now }, action: "po.draft", want: CodeCertificateRevoked},
		{name: "deadline now", change: func(d *delegation.Delegation) { d.Task.Deadline = now }, action: "po.draft", want: CodeDeadlinePassed},
		{name: "deadline before depth", change: func(d *delegation.Delegation) { d.Task.Deadline = now; d.Task.Depth = 3 }, action: "po.draft", want: CodeDeadlinePassed},
		{name: "depth", change: func(d *delegation.Delegation) { d.Task.Depth = 2 }, action: "po.draft", want: CodeDepthExceeded},
		{name: "chain of 9", change: func(d *delegation.Delegation) {
			d.Chain = make([]delegation.Link, 9)
		}, action: "po.draft", want: CodeChainTooLong},
		{name: "depth before action", change: func(d *delegation.Delegation) { d.Task.Depth = 2 }, action: "po.approve", want: CodeDepthExceeded},
		{name: "action", action: "po.approve", want: CodeActionNotGranted},
		{name: "action prefix", action: "po.dra", want: CodeActionNotGranted},
		{name: "action case", action: "PO.DRAFT", want: CodeActionNotGranted},
		{name: "action before amount", action: "po.approve", amount: "900.00:EUR", want: CodeActionNotGranted},
		{name: "no value limit", change: func(d *delegation.Delegation) { d.ValueLimit = nil }, action: "po.draft", amount: "1.00:EUR", want: CodeNoValueLimit},
		{name: "no limit, no amount", change: func(d *delegation.Delegation) { d.ValueLimit = nil }, action: "po.draft"},
		{name: "currency", action: "po.draft", amount: "10.00:USD", want: CodeCurrencyMismatch},
		{name: "currency before over", action: "po.draft", amount: "900.00:USD", want: CodeCurrencyMismatch},
		{name: "over", action: "po.draft", amount: "500.01:EUR", want: CodeOverValueLimit},
	}
	for _, c := range cases {
		status := fresh
		if c.status != nil {
			status = c.status
			if status.ClosedTaskIDs == nil {
				status = nil
			}
		}
		d := sample()
		if c.change != nil {
			c.change(d)
		}
		revoked := c.revoked
		if revoked == nil && !c.noCRL {
			revoked = fakeCRL{}
		}
		v := New(RequireUnder("/ai"), fakeStatus{status}, revoked)
		var amt *delegation.ValueLimit
		if c.amount != "" {
			amt = amount(t, c.amount)
		}
		got := v.AuthorizeAt(&Caller{ID: agent, Delegation: d, Certificate: cert}, c.action, amt, now)
		switch {
		case c.want == "" && got != nil:
			t.Errorf("%s: refused %s: %s", c.name, got.Code, got.Reason)
		case c.want != "" && (got == nil || got.Code != c.want):
			t.Errorf("%s: got %+v, want %s", c.name, got, c.want)
		}
	}
}

func TestCallersWithoutDelegation(t *testing.T) {
	v := New(RequireUnder("/ai/"), fakeStatus{nil}, fakeCRL{7: true})
	agent := &Caller{ID: spiffeid.RequireFromString("spiffe://example.org/ai/x")}
	if r := v.AuthorizeAt(agent, "po.draft", nil, now); r == nil || r.Code != CodeDelegationRequired {
		t.Fatalf("agent without delegation: %+v", r)
	}
	service := &Caller{ID: spiffeid.RequireFromString("spiffe://example.org/aid"), Certificate: &x509.Certificate{SerialNumber: big.NewInt(1)}}
	if r := v.AuthorizeAt(service, "anything", nil, now); r != nil {
		t.Fatalf("a service outside /ai passes through, even with no task status: %+v", r)
	}
	if r := New(RequireUnder("/ai"), fakeStatus{nil}, fakeCRL(nil)).AuthorizeAt(service, "x", nil, now); r != nil {
		t.Fatalf("a service passes through before the CRLs arrive: %+v", r)
	}
	service.Certificate.SerialNumber = big.NewInt(7)
	if r := v.AuthorizeAt(service, "anything", nil, now); r == nil || r.Code != CodeCertificateRevoked {
		t.Fatalf("revoked service: %+v", r)
	}
}

func TestPolicyMatchesWholeSegments(t *testing.T) {
	p := RequireUnder("/ai/", "/agents/procurement")
	for id, want := range map[string]bool{
		"spiffe://example.org/ai": true, "spiffe://example.org/ai/procurement": true,
		"spiffe://example.org/aid": false, "spiffe://example.org/agents/procurement/x": true,
		"spiffe://example.org/agents/procure": false, "spiffe://example.org/po-service": false,
	} {
		if got := p.RequiresDelegation(spiffeid.RequireFromString(id)); got != want {
			t.Errorf("%s: %v", id, got)
		}
	}
	if RequireUnder().RequiresDelegation(spiffeid.RequireFromString("spiffe://example.org/ai")) {
		t.Error("empty policy requires")
	}
}

func leaf(t *testing.T, uri string, extValue []byte, critical bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "x"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	if uri != "" {
		u, _ := url.Parse(uri)
		template.URIs = []*url.URL{u}
	}
	if extValue != nil {
		template.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier(delegation.OIDArcs), Critical: critical, Value: extValue}}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestHandshakeRefusals(t *testing.T) {
	policy := RequireUnder("/ai")
	good, err := sample().MarshalDER()
	if err != nil {
		t.Fatal(err)
	}
	caller, r := CallerFromCertificate(leaf(t, "spiffe://example.org/ai/procurement", good, false), policy)
	if r != nil || caller.Delegation == nil || caller.Delegation.Principal.String() != "user:alice@example.org" {
		t.Fatalf("delegated agent: %+v %+v", caller, r)
	}
	cases := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"no id", leaf(t, "", nil, false), CodeNoSpiffeID},
		{"not spiffe", leaf(t, "https://example.org/x", nil, false), CodeNoSpiffeID},
		{"garbage ext", leaf(t, "spiffe://example.org/billing", []byte{0x30, 0x03, 0x02, 0x01, 0x07}, false), CodeDelegationMalformed},
		{"critical ext", leaf(t, "spiffe://example.org/ai/p", good, true), CodeDelegationMalformed},
		{"agent without", leaf(t, "spiffe://example.org/ai/p", nil, false), CodeDelegationRequired},
	}
	for _, c := range cases {
		if _, r := CallerFromCertificate(c.cert, policy); r == nil || r.Code != c.want {
			t.Errorf("%s: got %+v, want %s", c.name, r, c.want)
		}
	}
	if c, r := CallerFromCertificate(leaf(t, "spiffe://example.org/billing", nil, false), policy); r != nil || c.Delegation != nil {
		t.Errorf("service caller: %+v %+v", c, r)
	}
	if _, r := CallerFromConnectionState(nil, policy); r == nil || r.Code != CodeNoPeerCertificate {
		t.Errorf("no peer: %+v", r)
	}
}
