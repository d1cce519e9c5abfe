package httpcache

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// RFC 9111 4.3.2, with RFC 9110 13.1.2, 13.1.3 and 13.2: how a cache
// answers a client's conditional request from a stored response.
func TestNotModified(t *testing.T) {
	lm := dateNow.Add(-time.Hour)
	stored := http.Header{"Etag": {`"v1"`}, "Last-Modified": {lm.Format(http.TimeFormat)}, "Date": {dateNow.Format(http.TimeFormat)}}
	weak := http.Header{"Etag": {`W/"v1"`}}
	noLM := http.Header{"Date": {dateNow.Format(http.TimeFormat)}}
	at := func(d time.Duration) string { return lm.Add(d).Format(http.TimeFormat) }
	for _, tc := range []struct {
		name   string
		status int
		stored http.Header
		req    []string
		want   bool
	}{
		// RFC 9110 13.1.2: If-None-Match, weak comparison.
		{"INM strong match", 200, stored, []string{"If-None-Match", `"v1"`}, true},
		{"INM weak request tag", 200, stored, []string{"If-None-Match", `W/"v1"`}, true},
		{"INM weak stored tag", 200, weak, []string{"If-None-Match", `"v1"`}, true},
		{"INM no match", 200, stored, []string{"If-None-Match", `"v2"`}, false},
		{"INM list, middle", 200, stored, []string{"If-None-Match", `"a", "v1", "b"`}, true},
		{"INM two lines", 200, stored, []string{"If-None-Match", `"a"`, "If-None-Match", `"v1"`}, true},
		{"INM star", 200, stored, []string{"If-None-Match", "*"}, true},
		{"INM unquoted tag matches nothing", 200, stored, []string{"If-None-Match", "v1"}, false},
		{"INM lower-case w/ matches nothing", 200, weak, []string{"If-None-Match", `w/"v1"`}, false},
		{"INM, stored has no ETag", 200, noLM, []string{"If-None-Match", `"v1"`}, false},
		// RFC 9110 13.2.2: If-None-Match decides, If-Modified-Since is
		// not looked at.
		{"INM over IMS", 200, stored, []string{"If-None-Match", `"v2"`, "If-Modified-Since", at(time.Hour)}, false},
		// RFC 9110 13.1.3: If-Modified-Since against Last-Modified.
		{"IMS equal", 200, stored, []string{"If-Modified-Since", at(0)}, true},
		{"IMS later", 200, stored, []string{"If-Modified-Since", at(time.Second)}, true},
		{"IMS earlier", 200, stored, []string{"If-Modified-Since", at(-time.Second)}, false},
		{"IMS invalid date", 200, stored, []string{"If-Modified-Since", "yesterday"}, false},
		{"IMS two members", 200, stored, []string{"If-Modified-Since", at(0), "If-Modified-Since", at(0)}, false},
		// RFC 9111 4.3.2: without Last-Modified, the stored Date stands in.
		{"IMS against Date", 200, noLM, []string{"If-Modified-Since", dateNow.Format(http.TimeFormat)}, true},
		{"IMS before Date", 200, noLM, []string{"If-Modified-Since", at(0)}, false},
		// RFC 9110 13.2.1: no precondition for a response other than 2xx.
		{"stored 404", 404, stored, []string{"If-None-Match", `"v1"`}, false},
		{"stored 204", 204, stored, []string{"If-None-Match", `"v1"`}, true},
		{"no conditional", 200, stored, nil, false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		for i := 0; i+1 < len(tc.req); i += 2 {
			r.Header.Add(tc.req[i], tc.req[i+1])
		}
		if got := notModified(r, tc.status, tc.stored); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// RFC 9111 4.3.4 (which stored response a 304 freshens) and 3.2 (how its
// fields are updated).
func TestFreshen(t *testing.T) {
	lm := dateNow.Add(-time.Hour).Format(http.TimeFormat)
	later := dateNow.Add(time.Minute).Format(http.TimeFormat)
	base := http.Header{"Etag": {`"v1"`}, "Last-Modified": {lm}, "Content-Type": {"text/plain"},
		"Content-Length": {"4"}, "Cache-Control": {"max-age=1"}, "X-Kept": {"a"}, "Date": {dateNow.Format(http.TimeFormat)}}
	for _, tc := range []struct {
		name   string
		stored http.Header
		h304   http.Header
		ok     bool
		want   map[string]string // fields of the result; "" absent
	}{
		{"strong ETag, fields replaced", base, http.Header{"Etag": {`"v1"`}, "Cache-Control": {"max-age=3600"},
			"Content-Type": {"text/plain;charset=utf-8"}, "X-New": {"b"}, "Date": {later}}, true,
			map[string]string{"Cache-Control": "max-age=3600", "Content-Type": "text/plain;charset=utf-8",
				"X-New": "b", "X-Kept": "a", "Date": later, "Etag": `"v1"`}},
		// RFC 9111 3.2: Content-Length describes the stored body; hop-by-hop
		// fields, and those Connection names, are never stored.
		{"Content-Length and hop-by-hop kept out", base, http.Header{"Etag": {`"v1"`}, "Content-Length": {"0"},
			"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"}}, true,
			map[string]string{"Content-Length": "4", "X-Hop": "", "Keep-Alive": "", "Connection": ""}},
		{"no Date: the time received", base, http.Header{"Etag": {`"v1"`}}, true,
			map[string]string{"Date": dateNow.Format(http.TimeFormat)}},
		{"Age taken from the 304", base, http.Header{"Etag": {`"v1"`}, "Age": {"30"}}, true,
			map[string]string{"Age": "30"}},
		{"strong ETag differs", base, http.Header{"Etag": {`"v2"`}}, false, nil},
		{"strong 304, weak stored", http.Header{"Etag": {`W/"v1"`}}, http.Header{"Etag": {`"v1"`}}, false, nil},
		{"weak 304, strong stored", base, http.Header{"Etag": {`W/"v1"`}}, true, nil},
		{"weak 304, weak stored", http.Header{"Etag": {`W/"v1"`}}, http.Header{"Etag": {`W/"v1"`}}, true, nil},
		{"malformed ETag", base, http.Header{"Etag": {`v1`}}, false, nil},
		{"same Last-Modified", base, http.Header{"Last-Modified": {lm}}, true, nil},
		{"other Last-Modified", base, http.Header{"Last-Modified": {later}}, false, nil},
		{"no validator, stored has one", base, http.Header{"Cache-Control": {"max-age=60"}}, false, nil},
		{"no validator on either", http.Header{"X": {"1"}}, http.Header{"Cache-Control": {"max-age=60"}}, true,
			map[string]string{"Cache-Control": "max-age=60", "X": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stored := &entry{kind: kindResponse, status: 200, header: tc.stored, body: []byte("body")}
			before := tc.stored.Clone()
			h, ok := freshen(stored, tc.h304, dateNow)
			if ok != tc.ok {
				t.Fatalf("selected %v, want %v", ok, tc.ok)
			}
			for k, v := range tc.want {
				if got := h.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if len(before) != len(tc.stored) || before.Get("Cache-Control") != tc.stored.Get("Cache-Control") {
				t.Error("the stored header was modified in place")
			}
		})
	}
}

// RFC 9111 4.3.1: a validation request carries the stored entity-tag and
// Last-Modified; a malformed one is not sent.
func TestAddValidators(t *testing.T) {
	lm := dateNow.Format(http.TimeFormat)
	for _, tc := range []struct {
		stored   http.Header
		inm, ims string
	}{
		{http.Header{"Etag": {`"a"`}, "Last-Modified": {lm}}, `"a"`, lm},
		{http.Header{"Etag": {`W/"a"`}}, `W/"a"`, ""},
		{http.Header{"Etag": {`a`}, "Last-Modified": {"yesterday"}}, "", ""},
		{http.Header{}, "", ""},
	} {
		h := http.Header{}
		got := addValidators(h, &entry{header: tc.stored}, dateNow)
		if h.Get("If-None-Match") != tc.inm || h.Get("If-Modified-Since") != tc.ims || got != (tc.inm != "" || tc.ims != "") {
			t.Errorf("%v: %v, %v", tc.stored, h, got)
		}
	}
}
