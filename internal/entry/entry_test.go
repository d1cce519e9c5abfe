package entry

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	h := Header{ID: NewID(), TTL: 1500 * time.Millisecond, Stale: time.Hour, Delta: 1234 * time.Microsecond}
	raw := Append(nil, h, []byte("payload"))
	got, payload, err := Decode(raw)
	if err != nil || got != h || string(payload) != "payload" {
		t.Fatalf("Decode = %+v %q %v", got, payload, err)
	}
	if got := raw[idOffset : idOffset+idLen]; string(got) != h.ID.Arg() {
		t.Fatalf("the id the scripts compare is %x, want %x", got, h.ID.Arg())
	}
	tomb := Append(nil, Header{Tombstone: true, TTL: time.Second}, nil)
	if got, _, err := Decode(tomb); err != nil || !got.Tombstone {
		t.Fatalf("tombstone: Decode = %+v %v", got, err)
	}
	kept := Header{ID: NewID(), TTL: time.Second, Keep: time.Hour}
	raw = Append(nil, kept, []byte("v"))
	if raw[1] != 2 {
		t.Fatalf("an entry with a keep window is version %d, want 2", raw[1])
	}
	if got, _, err := Decode(raw); err != nil || got != kept {
		t.Fatalf("kept: Decode = %+v %v, want %+v", got, err, kept)
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), append(tomb, 'x'), {magic, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0}, {magic, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0}} {
		if _, _, err := Decode(bad); err != ErrCorrupt {
			t.Errorf("Decode(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// Anything Decode accepts re-encodes to an entry that decodes the same.
func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, Header{TTL: time.Second, Stale: time.Second, Delta: time.Millisecond}, []byte("v")))
	f.Add(Append(nil, Header{Tombstone: true, TTL: time.Second}, nil))
	f.Add([]byte("garbage"))
	f.Add([]byte{0xA7, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := Decode(b)
		if err != nil {
			return
		}
		h2, p2, err := Decode(Append(nil, h, payload))
		if err != nil || h2 != h || string(p2) != string(payload) {
			t.Fatalf("round trip: %+v %q -> %+v %q %v", h, payload, h2, p2, err)
		}
	})
}

// Whatever Append is given, Decode reads back, with durations in the
// units the format keeps.
func FuzzAppend(f *testing.F) {
	f.Add(uint64(1), false, int64(time.Second), int64(time.Minute), int64(time.Millisecond), int64(0), []byte("v"))
	f.Add(uint64(0), true, int64(-1), int64(1<<62), int64(1<<63-1), int64(time.Hour), []byte(nil))
	f.Fuzz(func(t *testing.T, id uint64, tomb bool, ttl, stale, delta, keep int64, payload []byte) {
		if tomb {
			payload = nil
		}
		h := Header{ID: ID(id), Tombstone: tomb, TTL: time.Duration(ttl), Stale: time.Duration(stale), Delta: time.Duration(delta), Keep: time.Duration(keep)}
		got, p, err := Decode(Append(nil, h, payload))
		want := Header{ID: h.ID, Tombstone: tomb,
			TTL:   max(h.TTL, 0).Truncate(time.Millisecond),
			Stale: max(h.Stale, 0).Truncate(time.Millisecond),
			Delta: max(h.Delta, 0).Truncate(time.Microsecond),
			Keep:  max(h.Keep, 0).Truncate(time.Millisecond)}
		if err != nil || got != want || string(p) != string(payload) {
			t.Fatalf("Append(%+v) decodes to %+v %q %v, want %+v", h, got, p, err, want)
		}
	})
}
