// ValueLimit: an amount in minor units of a currency, and its text form `<amount>:<CODE>`.

package delegation

import (
	"fmt"
	"strconv"
	"strings"
)

// ValueLimit is an amount in hundredths of a currency: `500.00:EUR` is {50000, "EUR"}.
type ValueLimit struct {
	AmountMinor int64
	Currency    string // three ASCII upper-case letters
}

// ParseValueLimit parses `<amount>:<ISO 4217 code>` with at most two decimals, e.g.
// `120.00:EUR`, as mandate-core does. It fails on a sign, a third decimal, a trailing dot,
// a currency that is not three upper-case letters, or an amount over the int64 range.
func ParseValueLimit(text string) (ValueLimit, error) {
	bad := fmt.Errorf("bad value limit %q: expected <amount>:<CODE> such as 120.00:EUR", text)
	amount, currency, ok := strings.Cut(text, ":")
	if !ok || !validCurrency(currency) {
		return ValueLimit{}, bad
	}
	whole, frac, hasDot := strings.Cut(amount, ".")
	if whole == "" || !allDigits(whole) || !allDigits(frac) || len(frac) > 2 || hasDot && frac == "" {
		return ValueLimit{}, bad
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return ValueLimit{}, bad
	}
	var f int64
	switch len(frac) {
	case 1:
		f = int64(frac[0]-'0') * 10
	case 2:
		f = int64(frac[0]-'0')*10 + int64(frac[1]-'0')
	}
	const maxInt64 = int64(^uint64(0) >> 1)
	if w > (maxInt64-f)/100 {
		return ValueLimit{}, bad
	}
	return ValueLimit{AmountMinor: w*100 + f, Currency: currency}, nil
}

// String is the text form, e.g. `120.00:EUR`.
func (v ValueLimit) String() string {
	sign := ""
	abs := uint64(v.AmountMinor)
	if v.AmountMinor < 0 {
		sign = "-"
		abs = -abs
	}
	return fmt.Sprintf("%s%d.%02d:%s", sign, abs/100, abs%100, v.Currency)
}

func validCurrency(code string) bool {
	if len(code) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return false
		}
	}
	return true
}

func allDigits(text string) bool {
	for i := 0; i < len(text); i++ {
		if text[i] < '0' || text[i] > '9' {
			return false
		}
	}
	return true
}
