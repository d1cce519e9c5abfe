package httpcache

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stampede-go/stampede"
)

// RFC 8941 4.2.2: a Dictionary parses strictly, or not at all.
func TestParseSFDictionary(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string // members as key:kind, "" when it must fail
	}{
		{[]string{"max-age=60"}, "max-age:1"},
		{[]string{"max-age=60, private"}, "max-age:1 private:6"},
		{[]string{"max-age=60", "no-store"}, "max-age:1 no-store:6"}, // lines join with commas
		{[]string{`no-cache="set-cookie"`}, "no-cache:3"},
		{[]string{"a=1.5, b=tok/en, c=:aGk=:, d=?0, e=(1 2);p=3"}, "a:2 b:4 c:5 d:6 e:7"},
		{[]string{"a=1;p=2;q, b"}, "a:1 b:6"},
		{[]string{"a=1, a=2"}, "a:1"}, // the last value, in the first place
		{[]string{"  a=1  "}, "a:1"},
		{[]string{"a=1 ,\tb=2"}, "a:1 b:1"},
		{[]string{"a=-0"}, "a:1"},
		{[]string{"a=999999999999999"}, "a:1"},
		{[]string{""}, "(empty)"},
		// Failures.
		{[]string{"Max-Age=60"}, ""},         // keys are lower case
		{[]string{"max-age =60"}, ""},        // no space before "="
		{[]string{"max-age= 60"}, ""},        // nor after
		{[]string{"max-age=60,"}, ""},        // trailing comma
		{[]string{"max-age=60, &&&&"}, ""},   // not a key
		{[]string{"a=1000000000000000"}, ""}, // 16 digits
		{[]string{"a=1.2345"}, ""},           // 4 fraction digits
		{[]string{"a=1."}, ""},
		{[]string{`a="unterminated`}, ""},
		{[]string{`a="bad \n escape"`}, ""},
		{[]string{"a=?2"}, ""},
		{[]string{"a=(1 2"}, ""},
		{[]string{"a=:not base64!:"}, ""},
		{[]string{"a=1 b=2"}, ""},
		{[]string{"a=@1"}, ""},
	} {
		members, ok := parseSFDictionary(tc.in)
		var got []string
		for _, m := range members {
			got = append(got, fmt.Sprintf("%s:%d", m.key, m.item.kind))
		}
		s := strings.Join(got, " ")
		if ok && s == "" {
			s = "(empty)"
		}
		if s != tc.want {
			t.Errorf("%q: %q (ok %v), want %q", tc.in, s, ok, tc.want)
		}
	}
}

// RFC 9213 2.1 and 2.2, and the CDN-Cache-Control cases of the public
// HTTP caching tests: a targeted field with a valid, non-empty value
// governs this cache, and Cache-Control and Expires are then ignored; an
// invalid or empty one is ignored.
func TestTargetedCacheControl(t *testing.T) {
	future := func() string { return time.Now().Add(time.Hour).UTC().Format(http.TimeFormat) }
	past := func() string { return time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat) }
	for _, tc := range []struct {
		name   string
		hdr    func() http.Header
		opts   Options
		life   time.Duration // 0: not stored
		reason string
	}{
		{"max-age", hdrs("CDN-Cache-Control", "max-age=3600"), Options{}, time.Hour, ""},
		{"max-age 2^31", hdrs("CDN-Cache-Control", "max-age=2147483648"), Options{}, maxLifetime, ""},
		{"max-age past 2^31", hdrs("CDN-Cache-Control", "max-age=99999999999"), Options{}, maxLifetime, ""},
		{"max-age=0", hdrs("CDN-Cache-Control", "max-age=0"), Options{}, 0, "stale"},
		{"extension directive", hdrs("CDN-Cache-Control", "foobar, max-age=3600"), Options{}, time.Hour, ""},
		{"over a past Expires", func() http.Header {
			return http.Header{"Cdn-Cache-Control": {"max-age=3600"}, "Expires": {past()}}
		}, Options{}, time.Hour, ""},
		{"over an invalid Expires", hdrs("CDN-Cache-Control", "max-age=3600", "Expires", "0"), Options{}, time.Hour, ""},
		{"max-age=0 over a future Expires", func() http.Header {
			return http.Header{"Cdn-Cache-Control": {"max-age=0"}, "Expires": {future()}}
		}, Options{}, 0, "stale"},
		{"long over short Cache-Control", hdrs("Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age=3600"), Options{}, time.Hour, ""},
		{"short over long Cache-Control", hdrs("Cache-Control", "max-age=3600", "CDN-Cache-Control", "max-age=1"), Options{}, time.Second, ""},
		{"private", hdrs("CDN-Cache-Control", "private", "Cache-Control", "max-age=10000"), Options{}, 0, "private"},
		{"no-cache", hdrs("CDN-Cache-Control", "no-cache", "Cache-Control", "max-age=10000"), Options{}, 0, "no-cache"},
		{"no-store", hdrs("CDN-Cache-Control", "no-store", "Cache-Control", "max-age=10000"), Options{}, 0, "no-store"},
		{"over Cache-Control no-store", hdrs("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=10000"), Options{}, 10000 * time.Second, ""},
		// RFC 9213 2.2: a field that does not parse, or gives a directive
		// a value of the wrong type, is ignored.
		{"invalid: unknown type", hdrs("CDN-Cache-Control", "max-age=10000, &&&&&", "Cache-Control", "no-store"), Options{}, 0, "no-store"},
		{"invalid: wrong type", hdrs("CDN-Cache-Control", `max-age="10000"`, "Cache-Control", "no-store"), Options{}, 0, "no-store"},
		{"invalid: space before =", hdrs("Cache-Control", "max-age=1", "CDN-Cache-Control", "max-age =100"), Options{}, time.Second, ""},
		{"invalid: upper case", hdrs("Cache-Control", "max-age=1", "CDN-Cache-Control", "MaX-aGe=3600"), Options{}, time.Second, ""},
		{"empty", hdrs("Cache-Control", "max-age=1", "CDN-Cache-Control", ""), Options{}, time.Second, ""},
		// The target list: the first field with a valid value governs.
		{"own field first", hdrs("Example-Cache-Control", "max-age=5", "CDN-Cache-Control", "max-age=50"),
			Options{TargetedFields: []string{"Example-Cache-Control", "CDN-Cache-Control"}}, 5 * time.Second, ""},
		{"own field invalid", hdrs("Example-Cache-Control", "max-age=x", "CDN-Cache-Control", "max-age=50"),
			Options{TargetedFields: []string{"Example-Cache-Control", "CDN-Cache-Control"}}, 50 * time.Second, ""},
		// RFC 9213 2.1: a field not on the list changes nothing.
		{"not on the list", hdrs("Other-Cache-Control", "no-store", "Cache-Control", "max-age=60"), Options{}, time.Minute, ""},
		{"list emptied", hdrs("CDN-Cache-Control", "no-store", "Cache-Control", "max-age=60"),
			Options{TargetedFields: []string{}}, time.Minute, ""},
		// RFC 9111 3.5 through the targeted field.
		{"authorization, public", hdrs("CDN-Cache-Control", "public, max-age=60", "Cache-Control", "private"), Options{}, time.Minute, ""},
		{"authorization", hdrs("CDN-Cache-Control", "max-age=60", "Cache-Control", "public"), Options{}, 0, "authorization"},
		{"stale windows", hdrs("CDN-Cache-Control", "max-age=60, stale-while-revalidate=30"), Options{}, time.Minute, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMW(t, nil, tc.opts)
			r := httpGet()
			if strings.HasPrefix(tc.name, "authorization") {
				r.Header.Set("Authorization", "Bearer x")
			}
			h := tc.hdr()
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			e, _, reason := m.classify(r, 200, h, []byte("x"), time.Now())
			var life time.Duration
			if e != nil {
				life = e.life
			}
			if life != tc.life || reason != tc.reason {
				t.Fatalf("life %v, reason %q; want %v, %q", life, reason, tc.life, tc.reason)
			}
			if e != nil && e.header.Get("Cdn-Cache-Control") != h.Get("Cdn-Cache-Control") {
				t.Fatal("the targeted field is not stored (nor forwarded)")
			}
		})
	}
}

// hdrs builds a header from name, value pairs.
func hdrs(kv ...string) func() http.Header {
	return func() http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
}

// Options that cannot work are an error wrapping ErrInvalidOptions.
func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{TargetedFields: []string{"Bad Name"}},
		{TargetedFields: []string{""}},
		{HeuristicFraction: -0.1},
		{HeuristicFraction: 1.5},
		{StaleOnError: -time.Second},
		{MaxBodySize: -1},
		{CacheStatusName: "tab\there"},
		{LoadTimeout: -time.Second},
		{LoadTimeout: -500 * time.Millisecond}, // not made valid by the core's extra second
		{LockTTL: -time.Second},
	} {
		if _, err := New(nil, o); !errors.Is(err, stampede.ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// FuzzParseTargeted: the Structured Field parser and the targeted-field
// reading never panic; keys follow RFC 8941 3.2, and what is read as
// delta-seconds is a non-negative Integer.
func FuzzParseTargeted(f *testing.F) {
	for _, s := range []string{"max-age=60", `no-cache="a, b", private`, "a=(1 2);p=?0, b=:aGk=:", "max-age=\"1\"",
		"max-age=60, &&", "x=1.5", "  y  ", "z=-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		members, ok := parseSFDictionary([]string{s})
		if !ok {
			return
		}
		for _, m := range members {
			if _, ok := (&sfParser{s: m.key}).key(); !ok || m.key == "" {
				t.Fatalf("%q: key %q", s, m.key)
			}
		}
		d, ok := parseTargeted([]string{s})
		if !ok {
			return
		}
		if v, present, valid := d.seconds("max-age"); present && (!valid || v < 0) {
			t.Fatalf("%q: max-age %v %v", s, v, valid)
		}
	})
}
