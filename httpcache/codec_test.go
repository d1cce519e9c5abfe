package httpcache

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sameEntry compares two entries field by field; nil and empty slices and
// maps are the same.
func sameEntry(a, b *entry) error {
	switch {
	case a.kind != b.kind || a.status != b.status:
		return fmt.Errorf("kind/status %d/%d vs %d/%d", a.kind, a.status, b.kind, b.status)
	case a.fetch != b.fetch || a.fwdStatus != b.fwdStatus:
		return fmt.Errorf("fetch %d/%d vs %d/%d", a.fetch, a.fwdStatus, b.fetch, b.fwdStatus)
	case a.initialAge != b.initialAge || a.life != b.life || a.swr != b.swr || a.sie != b.sie:
		return fmt.Errorf("durations %v %v %v %v vs %v %v %v %v", a.initialAge, a.life, a.swr, a.sie, b.initialAge, b.life, b.swr, b.sie)
	case a.gen != b.gen || a.reason != b.reason || !bytes.Equal(a.body, b.body):
		return fmt.Errorf("gen, reason or body")
	case len(a.vary) != len(b.vary) || len(a.header) != len(b.header):
		return fmt.Errorf("vary or header count")
	}
	for i := range a.vary {
		if a.vary[i] != b.vary[i] {
			return fmt.Errorf("vary %d", i)
		}
	}
	for k, v := range a.header {
		w, ok := b.header[k]
		if !ok || len(v) != len(w) {
			return fmt.Errorf("header %q", k)
		}
		for i := range v {
			if v[i] != w[i] {
				return fmt.Errorf("header %q value %d", k, i)
			}
		}
	}
	return nil
}

// What the codec cannot read back, it refuses to write, with an error.
func TestCodecRefusesWhatItCannotRead(t *testing.T) {
	ok := func() *entry { return &entry{kind: kindResponse, status: 200, life: time.Minute} }
	for _, tc := range []struct {
		name   string
		change func(e *entry)
	}{
		{"kind 0", func(e *entry) { e.kind = 0 }},
		{"unknown kind", func(e *entry) { e.kind = kindPass + 1 }},
		{"status 1000", func(e *entry) { e.status = 1000 }},
		{"negative status", func(e *entry) { e.status = -1 }},
		{"negative age", func(e *entry) { e.initialAge = -time.Millisecond }},
		{"lifetime past the bound", func(e *entry) { e.life = maxLifetime + time.Millisecond }},
		{"lifetime over 2^62 ns", func(e *entry) { e.life = 1<<62 + time.Millisecond }},
		{"sub-millisecond", func(e *entry) { e.swr = time.Millisecond + 1 }},
		{"unknown fetch", func(e *entry) { e.fetch = fetchFailed + 1 }},
		{"run status 1000", func(e *entry) { e.fetch, e.fwdStatus = fetchFailed, 1000 }},
		{"run status after a miss", func(e *entry) { e.fwdStatus = 304 }},
	} {
		e := ok()
		tc.change(e)
		if _, err := (codec{}).Marshal(e); err == nil {
			t.Errorf("%s: encoded", tc.name)
		}
	}
	for _, e := range []*entry{ok(), {kind: kindResponse, status: 200, fetch: fetchRevalidated, fwdStatus: 304},
		{kind: kindResponse, status: 200, fetch: fetchFailed}} {
		if _, err := (codec{}).Marshal(e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (codec{}).Marshal("not an entry"); err == nil {
		t.Fatal("encoded a string")
	}
}

// An entry a plain miss stored is written in format 1, as every earlier
// release wrote and reads it; the run record of a revalidation needs
// format 2.
func TestCodecFormat(t *testing.T) {
	for _, tc := range []struct {
		e       *entry
		version byte
	}{
		{&entry{kind: kindResponse, status: 200, life: time.Minute, body: []byte("x")}, codecVersion},
		{&entry{kind: kindPass, reason: "private"}, codecVersion},
		{&entry{kind: kindResponse, status: 200, fetch: fetchRevalidated, fwdStatus: 304}, codecVersionFetch},
		{&entry{kind: kindResponse, status: 200, fetch: fetchFailed}, codecVersionFetch},
	} {
		b, err := (codec{}).Marshal(tc.e)
		if err != nil || b[0] != tc.version {
			t.Fatalf("%+v: format %d, %v; want %d", tc.e, b[0], err, tc.version)
		}
		var got *entry
		if err := (codec{}).Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if err := sameEntry(tc.e, got); err != nil {
			t.Fatal(err)
		}
	}
	// Written by the release before format 2: a 200 with one field.
	v1 := []byte{1, 1, 0xc8, 0x01, 0, 0xe0, 0xd4, 0x03, 0, 0, 0, 0, 0, 1, 1, 'A', 1, 1, 'b', 'x'}
	var got *entry
	if err := (codec{}).Unmarshal(v1, &got); err != nil {
		t.Fatal(err)
	}
	want := &entry{kind: kindResponse, status: 200, life: time.Minute, header: http.Header{"A": {"b"}}, body: []byte("x")}
	if err := sameEntry(want, got); err != nil {
		t.Fatal(err)
	}
}

// FuzzCodecRoundTrip: whatever Marshal accepts, Unmarshal returns unchanged.
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add(uint8(1), 200, int64(0), int64(60_000_000_000), int64(0), int64(0), "", "", "Accept\x00Accept-Language",
		"Content-Type\x00text/plain\x01Link\x00</a>\x00</b>", []byte("body"), uint8(0), 0)
	f.Add(uint8(2), 0, int64(0), int64(0), int64(0), int64(0), "0123abcd", "", "Accept-Encoding", "", []byte(nil), uint8(0), 0)
	f.Add(uint8(3), 0, int64(0), int64(0), int64(0), int64(0), "", "private", "", "", []byte{}, uint8(0), 0)
	f.Add(uint8(1), 200, int64(maxLifetime), int64(maxLifetime), int64(maxLifetime), int64(maxLifetime), "", "", "", "", []byte{0}, uint8(0), 0)
	f.Add(uint8(1), 304, int64(1), int64(-1), int64(1<<62), int64(0), "", "", "", "", []byte{}, uint8(0), 0)
	f.Add(uint8(1), 200, int64(0), int64(1000), int64(0), int64(0), "", "", "", "Etag\x00\"a\"", []byte("b"), uint8(1), 304)
	f.Add(uint8(1), 200, int64(0), int64(1000), int64(0), int64(60_000), "", "", "", "", []byte("b"), uint8(2), 503)
	f.Add(uint8(1), 200, int64(0), int64(1000), int64(0), int64(0), "", "", "", "", []byte("b"), uint8(3), 1000)
	f.Fuzz(func(t *testing.T, k uint8, status int, age, life, swr, sie int64, gen, reason, vary, hdr string, body []byte,
		fetch uint8, fwdStatus int) {
		e := &entry{kind: kind(k), status: status, initialAge: time.Duration(age), life: time.Duration(life),
			swr: time.Duration(swr), sie: time.Duration(sie), gen: gen, reason: reason, body: body, header: http.Header{},
			fetch: fetchKind(fetch), fwdStatus: fwdStatus}
		if vary != "" {
			e.vary = strings.Split(vary, "\x00")
		}
		for field := range strings.SplitSeq(hdr, "\x01") {
			if name, values, ok := strings.Cut(field, "\x00"); ok {
				e.header[name] = strings.Split(values, "\x00")
			}
		}
		b, err := (codec{}).Marshal(e)
		if err != nil {
			return
		}
		var got *entry
		if err := (codec{}).Unmarshal(b, &got); err != nil {
			t.Fatalf("encoded %+v, then: %v", e, err)
		}
		if err := sameEntry(e, got); err != nil {
			t.Fatalf("round trip changed %s:\n%+v\n%+v", err, e, got)
		}
	})
}

// FuzzCodecDecode: any bytes decode to an entry or an error, never a
// panic, and an entry that decodes encodes to bytes that decode to it.
func FuzzCodecDecode(f *testing.F) {
	b, _ := (codec{}).Marshal(&entry{kind: kindResponse, status: 200, life: time.Minute,
		header: http.Header{"A": {"1", "2"}}, vary: []string{"Accept"}, body: []byte("x")})
	f.Add(b)
	f.Add([]byte{codecVersion, byte(kindPass), 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Add([]byte{codecVersion, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	b, _ = (codec{}).Marshal(&entry{kind: kindResponse, status: 200, life: time.Minute, fetch: fetchFailed, fwdStatus: 503})
	f.Add(b)
	f.Add([]byte{codecVersionFetch, byte(kindResponse), 0, 0, 0, 0, 0, byte(fetchMiss), 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var e *entry
		if (codec{}).Unmarshal(data, &e) != nil {
			return
		}
		b, err := (codec{}).Marshal(e)
		if err != nil {
			t.Fatalf("decoded %+v, which does not encode: %v", e, err)
		}
		var again *entry
		if err := (codec{}).Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if err := sameEntry(e, again); err != nil {
			t.Fatal(err)
		}
	})
}
