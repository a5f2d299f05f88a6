package main

import "testing"

func TestRoutesMatchTheRustExample(t *testing.T) {
	cases := map[[2]string]string{
		{"POST", "/po/draft"}: "po.draft", {"POST", "/po/approve"}: "po.approve",
		{"POST", "/po/submit"}: "po.submit", {"POST", "/po/read"}: "po.read",
		{"GET", "/po/4711"}: "po.read", {"GET", "/po/draft"}: "", {"GET", "/po/"}: "",
		{"DELETE", "/po/draft"}: "", {"POST", "/admin/draft"}: "", {"POST", "/po/draft/x"}: "",
	}
	for in, want := range cases {
		if got := actionFor(in[0], in[1]); got != want {
			t.Errorf("%s %s: %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestAmountBodies(t *testing.T) {
	for body, want := range map[string]string{"": "", "  \n": "", `{}`: "", `{"amount":null}`: "", `[1]`: "",
		`{"amount":"120.00:EUR"}`: "120.00:EUR", `{"amount":"1.5:USD"}`: "1.50:USD"} {
		got, problem := parseAmount([]byte(body))
		if problem != "" || (got == nil) != (want == "") || got != nil && got.String() != want {
			t.Errorf("%q: %v %q", body, got, problem)
		}
	}
	for _, body := range []string{`{`, `{"amount":12}`, `{"amount":"12 EUR"}`} {
		if _, problem := parseAmount([]byte(body)); problem == "" {
			t.Errorf("%q accepted", body)
		}
	}
}
