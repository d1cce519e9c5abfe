package httpcache

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

var dateNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// RFC 9110 5.6.7: the three HTTP-date formats, exactly; RFC 9111 5.3: any
// other Expires value, "0" included, is invalid and means already expired.
func TestParseHTTPDate(t *testing.T) {
	nov6 := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time // zero: invalid
	}{
		// RFC 9110 5.6.7: the preferred format and the two obsolete ones.
		{"Sun, 06 Nov 1994 08:49:37 GMT", nov6},
		{"Sunday, 06-Nov-94 08:49:37 GMT", nov6},
		{"Sun Nov  6 08:49:37 1994", nov6},
		{"Thu, 18 Aug 2050 02:01:18 GMT", time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC)},
		{"Fri, 31 Dec 2286 23:59:59 GMT", time.Date(2286, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"Sat Nov 26 08:49:37 1994", time.Date(1994, 11, 26, 8, 49, 37, 0, time.UTC)},
		// RFC 9110 5.6.7: a two-digit year more than 50 years ahead is in
		// the past century.
		{"Thursday, 18-Aug-50 02:01:18 GMT", time.Date(2050, 8, 18, 2, 1, 18, 0, time.UTC)},
		{"Saturday, 18-Aug-79 02:01:18 GMT", time.Date(1979, 8, 18, 2, 1, 18, 0, time.UTC)},
		// RFC 9110 5.6.7: the leap second "23:59:60".
		{"Sat, 31 Dec 2016 23:59:60 GMT", time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)},

		// RFC 9110 5.6.7: HTTP-date is case-sensitive.
		{"Sun, 06 Nov 1994 08:49:37 gMT", time.Time{}},
		{"Sun, 06 Nov 1994 08:49:37 gmt", time.Time{}},
		{"SUN, 06 Nov 1994 08:49:37 GMT", time.Time{}},
		{"Sun, 06 NOV 1994 08:49:37 GMT", time.Time{}},
		// Exact grammar: digits, separators, single spaces, GMT only.
		{"0", time.Time{}},
		{"", time.Time{}},
		{"-1", time.Time{}},
		{"Sun, 06 Nov 1994 8:49:37 GMT", time.Time{}},     // 1-digit hour
		{"Sun, 6 Nov 1994 08:49:37 GMT", time.Time{}},     // 1-digit day
		{"Sun, 06  Nov  1994 08:49:37 GMT", time.Time{}},  // doubled spaces
		{"Sun 06 Nov 1994 08:49:37 GMT", time.Time{}},     // no comma
		{"Sun, 06-Nov-1994 08:49:37 GMT", time.Time{}},    // dashes
		{"Sun, 06 Nov 1994 08.49.37 GMT", time.Time{}},    // periods
		{"Sun, 06 Nov 94 08:49:37 GMT", time.Time{}},      // 2-digit year in IMF-fixdate
		{"Sun, 06 Nov 1994 08:49:37 UTC", time.Time{}},    // not GMT
		{"Sun, 06 Nov 1994 08:49:37 +0000", time.Time{}},  // not GMT
		{" Sun, 06 Nov 1994 08:49:37 GMT", time.Time{}},   // leading space
		{"Sun, 06 Nov 1994 08:49:37 GMT ", time.Time{}},   // trailing space
		{"Sun, 06 Nov 1994 24:00:00 GMT", time.Time{}},    // hour
		{"Sun, 06 Nov 1994 08:60:00 GMT", time.Time{}},    // minute
		{"Sun, 06 Nov 1994 08:49:61 GMT", time.Time{}},    // second
		{"Sun, 00 Nov 1994 08:49:37 GMT", time.Time{}},    // day 0
		{"Thu, 31 Apr 2025 08:49:37 GMT", time.Time{}},    // no such date
		{"Mon, 06 Nov 1994 08:49:37 GMT", time.Time{}},    // wrong day name
		{"Sun, +6 Nov 1994 08:49:37 GMT", time.Time{}},    // sign
		{"Sun Nov 6 08:49:37 1994", time.Time{}},          // asctime day not padded
		{"Sun Nov 06 08:49:37 1994", time.Time{}},         // asctime day zero-padded
		{"Sunday, 06 Nov 1994 08:49:37 GMT", time.Time{}}, // long name, IMF layout
		{"Sun, 06-Nov-94 08:49:37 GMT", time.Time{}},      // short name, rfc850 layout
		{"Sunday, 06-Nov-94 08:49:37 UTC", time.Time{}},
	} {
		got, ok := parseHTTPDate(tc.in, dateNow)
		if ok != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("parseHTTPDate(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

// Every IMF-fixdate net/http formats is accepted, and means the same instant.
func TestParseHTTPDateAgreesWithFormat(t *testing.T) {
	for _, ts := range []time.Time{dateNow, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC)} {
		s := ts.UTC().Format(http.TimeFormat)
		got, ok := parseHTTPDate(s, dateNow)
		if !ok || !got.Equal(ts) {
			t.Errorf("%s: got %v, %v", s, got, ok)
		}
	}
}

// Layouts of the three formats, for checking that whatever parses was
// written in exactly one of them.
const (
	layoutRFC850  = "Monday, 02-Jan-06 15:04:05 GMT"
	layoutAsctime = "Mon Jan _2 15:04:05 2006"
)

// FuzzParseHTTPDate: the parser never panics, and anything it accepts is
// the exact text of the instant it returns in one of the three formats.
func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994", "0", "Thu, 18 Aug 2050 02:01:18 gMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseHTTPDate(s, dateNow)
		if !ok {
			return
		}
		if strings.Contains(s, ":60") { // a leap second is read as the next second
			got = got.Add(-time.Second)
			s = strings.Replace(s, ":60", ":59", 1)
		}
		if got.Format(http.TimeFormat) != s && got.Format(layoutRFC850) != s && got.Format(layoutAsctime) != s {
			t.Fatalf("accepted %q as %v, which formats otherwise", s, got)
		}
	})
}
