package httpcache

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// RFC 9111 5.1: Age is the first member of the field; a value that is not
// a non-negative integer is ignored; RFC 9111 1.2.2: at most 2^31.
func TestParseAge(t *testing.T) {
	const ignored = -1
	for _, tc := range []struct {
		lines []string
		want  time.Duration
	}{
		{[]string{"7200"}, 7200 * time.Second},
		{[]string{"0"}, 0},
		{[]string{"7200, 0"}, 7200 * time.Second},
		{[]string{"7200,0"}, 7200 * time.Second},
		{[]string{"0,7200"}, 0},
		{[]string{"7200", "0"}, 7200 * time.Second}, // two lines: the first
		{[]string{"0", "7200"}, 0},
		{[]string{" 60 "}, 60 * time.Second},
		{[]string{"99999999999999999999"}, maxDeltaSeconds * time.Second},
		{[]string{"abc"}, ignored},
		{[]string{"-7200"}, ignored},
		{[]string{"7200.0"}, ignored},
		{[]string{"+5"}, ignored},
		{[]string{""}, ignored},
		{[]string{", 5"}, ignored},
		{nil, ignored},
	} {
		got, ok := parseAge(http.Header{"Age": tc.lines})
		if !ok {
			got = ignored
		}
		if got != tc.want {
			t.Errorf("Age %q: %v, want %v", tc.lines, got, tc.want)
		}
	}
}

// FuzzParseAge: never panics; an accepted Age is a whole number of seconds
// within [0, 2^31] and is what the first member says.
func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"7200", "7200, 0", "-1", "abc", "99999999999999999999", " 5 ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseAge(http.Header{"Age": {s}})
		if !ok {
			return
		}
		if got < 0 || got > maxLifetime || got%time.Second != 0 {
			t.Fatalf("Age %q: %v", s, got)
		}
		first, _ := nextItem(s)
		if n, err := strconv.ParseInt(trimOWS(first), 10, 64); err == nil && n <= maxDeltaSeconds && time.Duration(n)*time.Second != got {
			t.Fatalf("Age %q: %v, want %d s", s, got, n)
		}
	})
}

// RFC 9111 4.2.1: s-maxage, then max-age, then Expires minus Date; RFC
// 9111 5.3: an invalid Expires means already expired; RFC 9111 4.2.1: two
// Expires lines make the response stale; lifetimes are capped at 2^31 s.
func TestLifetime(t *testing.T) {
	date := dateNow
	at := func(d time.Duration) string { return date.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		name     string
		h        http.Header
		want     time.Duration
		explicit bool
	}{
		{"s-maxage first", http.Header{"Cache-Control": {"max-age=5, s-maxage=7"}, "Expires": {at(time.Hour)}}, 7 * time.Second, true},
		{"max-age over Expires", http.Header{"Cache-Control": {"max-age=5"}, "Expires": {at(time.Hour)}}, 5 * time.Second, true},
		{"Expires minus Date", http.Header{"Expires": {at(90 * time.Second)}}, 90 * time.Second, true},
		{"Expires in the past", http.Header{"Expires": {at(-time.Second)}}, 0, true},
		{"Expires 0", http.Header{"Expires": {"0"}}, 0, true},
		{"Expires lower-case gmt", http.Header{"Expires": {date.Add(time.Hour).Format("Mon, 02 Jan 2006 15:04:05") + " gmt"}}, 0, true},
		{"two Expires lines", http.Header{"Expires": {at(time.Hour), at(time.Hour)}}, 0, true},
		{"Expires in 2286", http.Header{"Expires": {"Fri, 31 Dec 2286 23:59:59 GMT"}}, maxLifetime, true},
		{"max-age past 2^31", http.Header{"Cache-Control": {"max-age=99999999999"}}, maxLifetime, true},
		{"invalid s-maxage is stale", http.Header{"Cache-Control": {"s-maxage=x, max-age=60"}}, 0, true},
		{"nothing", http.Header{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			life, explicit := lifetime(parseCacheControl(tc.h), true, tc.h, date, date)
			if life != tc.want || explicit != tc.explicit {
				t.Fatalf("lifetime %v, %v; want %v, %v", life, explicit, tc.want, tc.explicit)
			}
		})
	}
}

// RFC 9111 4.2.3: the corrected initial age is the larger of the apparent
// age (now - Date) and Age, never negative, at most 2^31 s.
func TestInitialAge(t *testing.T) {
	for _, tc := range []struct {
		age  string
		date time.Time
		want time.Duration
	}{
		{"", dateNow, 0},
		{"30", dateNow, 30 * time.Second},
		{"", dateNow.Add(-10 * time.Second), 10 * time.Second},
		{"5", dateNow.Add(-10 * time.Second), 10 * time.Second},
		{"", dateNow.Add(time.Hour), 0},                                   // a Date in the future
		{"", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), maxLifetime},       // apparent age over 2^31 s
		{"99999999999", dateNow, maxLifetime},                             // Age over 2^31 s
		{"", dateNow.Add(-1500 * time.Microsecond), time.Millisecond * 1}, // whole milliseconds
	} {
		h := http.Header{}
		if tc.age != "" {
			h.Set("Age", tc.age)
		}
		if got := initialAge(h, tc.date, dateNow); got != tc.want {
			t.Errorf("Age %q, Date %v: %v, want %v", tc.age, tc.date, got, tc.want)
		}
	}
}

// RFC 9111 4.2.2: a heuristic lifetime only without explicit freshness, a
// fraction of Date - Last-Modified, capped; RFC 9111 3: for a
// heuristically cacheable status or a response marked public.
func TestHeuristicFreshness(t *testing.T) {
	lm := dateNow.Add(-10 * time.Hour).Format(http.TimeFormat)
	for _, tc := range []struct {
		name     string
		fraction float64
		status   int
		hdr      http.Header
		want     time.Duration // 0: not stored
	}{
		{"10% of 10 h", 0.1, 200, http.Header{"Last-Modified": {lm}}, time.Hour},
		{"off by default", 0, 200, http.Header{"Last-Modified": {lm}}, 0},
		{"404 is heuristically cacheable", 0.1, 404, http.Header{"Last-Modified": {lm}}, time.Hour},
		{"capped at a day", 1, 200, http.Header{"Last-Modified": {dateNow.Add(-100 * 24 * time.Hour).Format(http.TimeFormat)}}, 24 * time.Hour},
		{"explicit freshness wins", 0.1, 200, http.Header{"Last-Modified": {lm}, "Cache-Control": {"max-age=5"}}, 5 * time.Second},
		{"invalid Last-Modified", 0.1, 200, http.Header{"Last-Modified": {"yesterday"}}, 0},
		{"Last-Modified after Date", 0.1, 200, http.Header{"Last-Modified": {dateNow.Add(time.Hour).Format(http.TimeFormat)}}, 0},
		{"302 not heuristically cacheable", 0.1, 302, http.Header{"Last-Modified": {lm}}, 0},
		{"302 marked public", 0.1, 302, http.Header{"Last-Modified": {lm}, "Cache-Control": {"public"}}, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMW(t, nil, Options{HeuristicFraction: tc.fraction, CacheableStatuses: []int{200, 302, 404}})
			tc.hdr.Set("Date", dateNow.Format(http.TimeFormat))
			e, _, reason := m.classify(httpGet(), tc.status, tc.hdr, nil, dateNow)
			var got time.Duration
			if e != nil {
				got = e.life
			}
			if got != tc.want {
				t.Fatalf("lifetime %v (%q), want %v", got, reason, tc.want)
			}
		})
	}
}

func httpGet() *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/", nil)
	return r
}
