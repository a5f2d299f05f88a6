package delegation

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const dataDir = "../../../core/tests/data"

// golden is the value of core/tests/data/delegation-golden.der (core/tests/golden.rs).
func golden() *Delegation {
	return &Delegation{
		Principal: Principal{Kind: User, ID: "alice@example.org"},
		Task: TaskInfo{ID: "task-golden-1", Purpose: "draft purchase orders for office supplies",
			Deadline: time.Unix(1796126400, 0).UTC(), Depth: 1, MaxDepth: 2},
		Actions:    []string{"po.draft", "po.submit"},
		ValueLimit: &ValueLimit{AmountMinor: 50000, Currency: "EUR"},
		Approval:   &Approval{Approver: "bob@example.org", ApprovedAt: time.Unix(1795339800, 0).UTC()},
		Chain: []Link{{Principal: Principal{Kind: Application, ID: "procurement-portal"},
			TaskID: "task-parent-0", Actor: "spiffe://example.org/agents/planner"}},
	}
}

// goldenChain2 is the value of delegation-golden-chain2.der (golden_chain2 in golden.rs): a
// sub-sub-task two links below alice's root task.
func goldenChain2() *Delegation {
	alice := Principal{Kind: User, ID: "alice@example.org"}
	return &Delegation{
		Principal: alice,
		Task: TaskInfo{ID: "task-fetch-2", Purpose: "fetch one supplier page",
			Deadline: time.Unix(1796122800, 0).UTC(), Depth: 2, MaxDepth: 3},
		Actions:    []string{"supplier.fetch"},
		ValueLimit: &ValueLimit{AmountMinor: 500, Currency: "EUR"},
		Chain: []Link{
			{Principal: alice, TaskID: "task-root-0", Actor: "spiffe://example.org/ai/planner"},
			{Principal: alice, TaskID: "task-search-1", Actor: "spiffe://example.org/ai/search"},
		},
	}
}

// expected holds the decoded value of each golden vector whose value this test knows; any
// other *.der in the directory must still decode, re-encode to the same bytes, and survive
// the JSON claim round trip, and each *.hex must hold the same bytes as its *.der.
var expected = map[string]func() *Delegation{
	"delegation-golden.der":        golden,
	"delegation-golden-chain2.der": goldenChain2,
}

func TestEveryKnownGoldenVectorIsPresent(t *testing.T) {
	for name := range expected {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestEveryGoldenVectorDecodes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dataDir, "*.der"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden vectors in %s: %v", dataDir, err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			der, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if text, err := os.ReadFile(strings.TrimSuffix(file, ".der") + ".hex"); err == nil {
				fromHex, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
				if err != nil || !bytes.Equal(fromHex, der) {
					t.Fatalf(".hex and .der disagree (%v)", err)
				}
			}
			d, err := ParseDER(der)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if want, ok := expected[name]; ok && !reflect.DeepEqual(d, want()) {
				t.Fatalf("decoded %+v\nwant    %+v", d, want())
			}
			again, err := d.MarshalDER()
			if err != nil || !bytes.Equal(again, der) {
				t.Fatalf("re-encoding differs (%v)", err)
			}
			claim, err := d.MarshalClaim()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseClaim(claim)
			if err != nil || !reflect.DeepEqual(back, d) {
				t.Fatalf("claim round trip: %v\n%s", err, claim)
			}
		})
	}
}

func TestGoldenEncodesToTheCommittedBytes(t *testing.T) {
	der, err := os.ReadFile(filepath.Join(dataDir, "delegation-golden.der"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := golden().MarshalDER()
	if err != nil || !bytes.Equal(got, der) || len(got) != 266 {
		t.Fatalf("encoding differs from the golden vector (%v, %d bytes)", err, len(got))
	}
}

func TestEveryMalformedVectorIsRefused(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dataDir, "malformed", "*.der"))
	if err != nil || len(files) < 50 {
		t.Fatalf("expected the malformed vectors in %s/malformed: %d, %v", dataDir, len(files), err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			der, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := ParseDER(der); err == nil {
				t.Fatalf("accepted: %+v", d)
			}
		})
	}
}

func TestRefusalKinds(t *testing.T) {
	der, err := golden().MarshalDER()
	if err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dataDir, "malformed", name+".der"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"too large", make([]byte, MaxDERLen+1), ErrTooLarge},
		{"trailing", append(append([]byte{}, der...), 0), ErrMalformed},
		{"version 2", read("version-2"), ErrVersion},
		{"depth over max", read("depth-over-max"), ErrLimit},
		{"chain of 9", read("chain-9"), ErrLimit},
		{"empty chain", read("chain-empty"), ErrLimit},
		{"purpose 257", read("purpose-257"), ErrLimit},
		{"long length", read("length-not-minimal"), ErrMalformed},
		{"indefinite", read("indefinite-length"), ErrMalformed},
		{"explicit tag", read("value-limit-explicit"), ErrMalformed},
	}
	for _, c := range cases {
		if _, err := ParseDER(c.input); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestTruncationsNeverPanicAndAreRefused(t *testing.T) {
	der, err := golden().MarshalDER()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(der); n++ {
		if _, err := ParseDER(der[:n]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", n)
		}
	}
	for i := range der {
		flipped := append([]byte{}, der...)
		flipped[i] ^= 0xff
		_, _ = ParseDER(flipped) // must not panic
	}
}

func TestClaimParserRules(t *testing.T) {
	good, err := golden().MarshalClaim()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"principal":{"kind":"user","id":"alice@example.org"},"task":{"id":"task-golden-1",` +
		`"purpose":"draft purchase orders for office supplies","deadline":1796126400,"depth":1,"max_depth":2},` +
		`"actions":["po.draft","po.submit"],"value_limit":{"amount_minor":50000,"currency":"EUR"},` +
		`"approval":{"approver":"bob@example.org","approved_at":1795339800},"chain":[{"principal":` +
		`{"kind":"application","id":"procurement-portal"},"task_id":"task-parent-0","actor":"spiffe://example.org/agents/planner"}]}`
	if string(good) != want {
		t.Fatalf("claim JSON differs from DELEGATION.md:\n%s", good)
	}
	minimal := `{"principal":{"kind":"workload","id":"spiffe://example.org/ai/a"},` +
		`"task":{"id":"t-1","purpose":"","deadline":1796126400,"depth":0,"max_depth":0},"actions":[]}`
	d, err := ParseClaim([]byte(minimal))
	if err != nil || d.ValueLimit != nil || d.Approval != nil || d.Chain != nil || d.Principal.Kind != Workload {
		t.Fatalf("minimal claim: %v %+v", err, d)
	}
	bad := map[string]string{
		"not json":        `{`,
		"no task":         `{"principal":{"kind":"user","id":"a"},"actions":[]}`,
		"kind unknown":    strings.Replace(string(good), `"kind":"user"`, `"kind":"robot"`, 1),
		"depth 256":       strings.Replace(string(good), `"depth":1`, `"depth":256`, 1),
		"depth negative":  strings.Replace(string(good), `"depth":1`, `"depth":-1`, 1),
		"depth over max":  strings.Replace(string(good), `"depth":1`, `"depth":3`, 1),
		"deadline string": strings.Replace(string(good), `"deadline":1796126400`, `"deadline":"x"`, 1),
		"currency":        strings.Replace(string(good), `"EUR"`, `"eur"`, 1),
		"task id":         strings.Replace(string(good), `"task-golden-1"`, `"a b"`, 1),
		"action space":    strings.Replace(string(good), `"po.draft"`, `"po draft"`, 1),
		"limit no amount": strings.Replace(string(good), `"amount_minor":50000,`, ``, 1),
		"workload id":     strings.Replace(minimal, `spiffe://example.org/ai/a`, `not-an-id`, 1),
		"chain of 9": strings.Replace(string(good), `"chain":[`, `"chain":[`+strings.Repeat(
			`{"principal":{"kind":"user","id":"c"},"task_id":"t","actor":"a"},`, 8), 1),
	}
	for name, text := range bad {
		if d, err := ParseClaim([]byte(text)); err == nil {
			t.Errorf("%s: accepted %+v", name, d)
		}
	}
}

func TestValueLimitText(t *testing.T) {
	ok := map[string]int64{"500.00:EUR": 50000, "1:USD": 100, "1.5:USD": 150, "0.07:CHF": 7}
	for text, minor := range ok {
		v, err := ParseValueLimit(text)
		if err != nil || v.AmountMinor != minor {
			t.Errorf("%s: %v %v", text, v, err)
		}
	}
	for _, text := range []string{"", "1", "1.:EUR", ".5:EUR", "1.234:EUR", "-1:EUR", "1:eur", "1:EURO", "99999999999999999999:EUR"} {
		if v, err := ParseValueLimit(text); err == nil {
			t.Errorf("%q accepted as %v", text, v)
		}
	}
	if s := (ValueLimit{AmountMinor: 12000, Currency: "EUR"}).String(); s != "120.00:EUR" {
		t.Errorf("String: %s", s)
	}
}

func TestFromJWTClaims(t *testing.T) {
	claim, err := golden().MarshalClaim()
	if err != nil {
		t.Fatal(err)
	}
	var value any
	if err := json.Unmarshal(claim, &value); err != nil {
		t.Fatal(err)
	}
	d, err := FromJWTClaims(map[string]any{"sub": "spiffe://example.org/ai/a", "delegation": value})
	if err != nil || !reflect.DeepEqual(d, golden()) {
		t.Fatalf("%v %+v", err, d)
	}
	if d, err := FromJWTClaims(map[string]any{"sub": "x"}); d != nil || err != nil {
		t.Fatalf("absent claim: %v %v", d, err)
	}
	if _, err := FromJWTClaims(map[string]any{"delegation": "not an object"}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("string claim: %v", err)
	}
}
