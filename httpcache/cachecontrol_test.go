package httpcache

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// ccLines builds a header whose Cache-Control field has the given lines.
func ccLines(lines ...string) http.Header { return http.Header{"Cache-Control": lines} }

// RFC 9111 5.2: names are case-insensitive tokens, arguments tokens or
// quoted strings; RFC 9111 4.2.1: a repeated or conflicting directive is
// read the most restrictive way.
func TestParseCacheControl(t *testing.T) {
	const none = -2 * time.Second // not present
	const bad = -1 * time.Second  // present, not usable: stale
	for _, tc := range []struct {
		name   string
		lines  []string
		maxAge time.Duration
		has    []string // directives present
		hasNot []string
	}{
		{"plain", []string{"max-age=60"}, 60 * time.Second, nil, nil},
		// RFC 9111 5.2: directive names are case-insensitive.
		{"upper case name", []string{"MAX-AGE=60, No-Store"}, 60 * time.Second, []string{"no-store"}, nil},
		// RFC 9111 5.2: both argument forms are accepted.
		{"quoted argument", []string{`max-age="60"`}, 60 * time.Second, nil, nil},
		{"leading zeros", []string{"max-age=003600"}, time.Hour, nil, nil},
		// RFC 9111 1.2.2: delta-seconds past 2^31 mean 2^31.
		{"overflow", []string{"max-age=99999999999999999999"}, maxDeltaSeconds * time.Second, nil, nil},
		// RFC 9111 4.2.1: an invalid max-age makes the response stale.
		{"not digits", []string{"max-age=ten"}, bad, nil, nil},
		{"single quotes", []string{"max-age='3600'"}, bad, nil, nil},
		{"decimal", []string{"max-age=3600.0"}, bad, nil, nil},
		{"negative", []string{"max-age=-1"}, bad, nil, nil},
		{"empty argument", []string{"max-age="}, bad, nil, nil},
		{"space after equals", []string{"max-age= 3600"}, bad, nil, nil},
		{"no argument", []string{"max-age"}, bad, nil, nil},
		// RFC 9111 5.2: "max-age =60" is no directive at all.
		{"space before equals", []string{"max-age =3600"}, none, nil, []string{"max-age"}},
		// A quoted string hides what looks like a directive in it.
		{"quoted lookalike first", []string{`extension="max-age=3600", max-age=1`}, time.Second, []string{"extension"}, nil},
		{"quoted lookalike last", []string{`max-age=1, extension="max-age=3600, no-store"`}, time.Second, nil, []string{"no-store"}},
		// RFC 9111 4.2.1: repeated with another value, most restrictive
		// of "the first" and "stale": stale; on one line or two.
		{"two values one line", []string{"max-age=1800, max-age=1"}, bad, nil, nil},
		{"two values two lines", []string{"max-age=1", "max-age=1800"}, bad, nil, nil},
		{"same value twice", []string{"max-age=60, max-age=60"}, 60 * time.Second, nil, nil},
		{"repeat quoted and bare", []string{`max-age=60, max-age="60"`}, 60 * time.Second, nil, nil},
		{"empty items", []string{",, max-age=5 ,,"}, 5 * time.Second, nil, nil},
		{"tabs", []string{"\tmax-age=5\t,\tpublic"}, 5 * time.Second, []string{"public"}, nil},
		{"unterminated quote", []string{`a="b, max-age=5`}, none, nil, []string{"max-age"}},
		{"bad escape is bad argument", []string{`private="a\`}, none, []string{"private"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := parseCacheControl(ccLines(tc.lines...))
			s, present, valid := cc.seconds("max-age")
			got := s
			switch {
			case !present:
				got = none
			case !valid:
				got = bad
			}
			if got != tc.maxAge {
				t.Errorf("max-age: %v, want %v (%#v)", got, tc.maxAge, cc)
			}
			for _, n := range tc.has {
				if !cc.has(n) {
					t.Errorf("%s missing: %#v", n, cc)
				}
			}
			for _, n := range tc.hasNot {
				if cc.has(n) {
					t.Errorf("%s present: %#v", n, cc)
				}
			}
		})
	}
}

// RFC 9111 5.2.2.4 and 5.2.2.7, read with 4.2.1's most restrictive rule:
// private or no-cache without fields covers the whole response whatever
// else is said; field lists add up.
func TestPrivateAndNoCacheLists(t *testing.T) {
	for _, tc := range []struct {
		lines       []string
		unqualified bool
		fields      []string
	}{
		{[]string{`private="Set-Cookie, x-a"`}, false, []string{"Set-Cookie", "X-A"}},
		{[]string{`private="x-a"`, "private"}, true, nil},
		{[]string{`private, private="x-a"`}, true, nil},
		{[]string{`private="x-a", private="x-b"`}, false, []string{"X-A", "X-B"}},
		{[]string{`PRIVATE="x-a"`}, false, []string{"X-A"}},
	} {
		cc := parseCacheControl(ccLines(tc.lines...))
		if got := cc.unqualified("private"); got != tc.unqualified {
			t.Errorf("%q: unqualified %v", tc.lines, got)
		}
		if got := cc.fieldList("private"); !slices.Equal(got, tc.fields) {
			t.Errorf("%q: fields %q, want %q", tc.lines, got, tc.fields)
		}
	}
}

// FuzzParseCacheControl: never panics; names come out as lower-case
// tokens, a valid delta-seconds is within 2^31, and parsing is stable:
// writing the directives back and parsing them again gives the same.
func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60, public", `private="a, b", no-cache`, `x="\"", max-age=1, max-age=2`,
		"max-age =5", "MAX-AGE=\"7\"", ",,,", `a="`, "s-maxage=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cc := parseCacheControl(ccLines(s))
		var parts []string
		for name, d := range cc {
			if !isToken(name) || name != strings.ToLower(name) {
				t.Fatalf("name %q", name)
			}
			if v, _, valid := d.seconds(); valid && (v < 0 || v > maxLifetime) {
				t.Fatalf("%s = %v", name, v)
			}
			part := name
			switch {
			case d.bad:
				continue // nothing but presence can be read from it
			case d.hasArg:
				part += `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(d.arg) + `"`
			}
			parts = append(parts, part)
		}
		again := parseCacheControl(ccLines(strings.Join(parts, ", ")))
		for name, d := range cc {
			if d.bad {
				continue
			}
			if d2 := again[name]; d2 != d {
				t.Fatalf("%q: %s parsed as %#v, then %#v", s, name, d, d2)
			}
		}
	})
}

// seconds reads one directive's delta-seconds, for the fuzz test.
func (d directive) seconds() (time.Duration, bool, bool) {
	return directives{"x": d}.seconds("x")
}

// RFC 9111 4.2.1: "If directives conflict (e.g., both max-age and no-cache
// are present), the most restrictive directive should be honored."
func TestConflictingDirectives(t *testing.T) {
	m := newMW(t, nil, Options{})
	for _, tc := range []struct {
		cc       []string
		reason   string
		life     time.Duration
		swr, sie time.Duration
	}{
		{[]string{"max-age=60, no-store"}, "no-store", 0, 0, 0},
		{[]string{"public, private"}, "private", 0, 0, 0},
		{[]string{"max-age=60", "no-cache"}, "no-cache", 0, 0, 0},
		{[]string{"max-age=60, NO-STORE"}, "no-store", 0, 0, 0},
		{[]string{"max-age=60, max-age=30"}, "stale", 0, 0, 0},
		{[]string{"max-age=60, stale-while-revalidate=30, must-revalidate"}, "", time.Minute, 0, 0},
		{[]string{"max-age=60, stale-if-error=30, stale-if-error=60"}, "", time.Minute, 0, 0},
		{[]string{"max-age=60, stale-if-error=30", "stale-if-error=30"}, "", time.Minute, 0, 30 * time.Second},
	} {
		e, _, reason := m.classify(httpGet(), 200, ccLines(tc.cc...), nil, time.Now())
		if reason != tc.reason {
			t.Errorf("%q: reason %q, want %q", tc.cc, reason, tc.reason)
			continue
		}
		if e != nil && (e.life != tc.life || e.swr != tc.swr || e.sie != tc.sie) {
			t.Errorf("%q: life %v swr %v sie %v", tc.cc, e.life, e.swr, e.sie)
		}
	}
}
