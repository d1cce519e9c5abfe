package httpcache

import (
	"net/url"
	"testing"
)

// The fast path agrees with parsing and re-encoding.
func TestCanonicalQueryAgreesWithEncode(t *testing.T) {
	for _, raw := range []string{"a=1", "a=1&b=2", "a=1&a=0", "b=2&a=1", "a", "a=", "a=1&&b=2",
		"a=%31", "a=1+2", "a=x&A=y", "A=y&a=x", "a=1&a=2&b=", "=1", "a=1;b=2", "a.b=c~d"} {
		n, ok := normalizeQuery(raw)
		vals, err := url.ParseQuery(raw)
		switch {
		case err != nil:
			if ok || n != raw {
				t.Errorf("%q: unparsable but normalized to %q", raw, n)
			}
		case n != vals.Encode():
			t.Errorf("%q: normalized %q, Encode %q", raw, n, vals.Encode())
		}
	}
}
