package httpcache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// codec is the binary encoding of entries in Redis:
//
//	byte     format version (1, or 2 when the fetch fields follow)
//	byte     kind
//	uvarint  status (at most 999), initialAge ms, life ms, swr ms, sie ms
//	         (each at most maxLifetime)
//	byte     version 2 only: fetch (fetchRevalidated or fetchFailed)
//	uvarint  version 2 only: fwdStatus (at most 999)
//	string   gen, reason        (uvarint length + bytes)
//	uvarint  number of vary names, then each name as a string
//	uvarint  number of header fields, then for each: name, number of values, values
//	rest     body
//
// An entry a plain miss stored (fetchMiss) is written as version 1, which
// every release reads.
type codec struct{}

const (
	codecVersion      = 1
	codecVersionFetch = 2
)

var errBadEntry = errors.New("httpcache: malformed entry")

// Marshal encodes an entry. It refuses, with an error, any entry Unmarshal
// would not return unchanged: classify never makes one, and writing one
// would leave every other server a miss on every request.
func (codec) Marshal(v any) ([]byte, error) {
	e, ok := v.(*entry)
	if !ok || e == nil {
		return nil, fmt.Errorf("httpcache: cannot encode %T", v)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	// Each string adds a length of a byte or two.
	b := make([]byte, 0, 48+e.bytes()+2*(len(e.vary)+len(e.header)+e.values()))
	version := byte(codecVersion)
	if e.fetch != fetchMiss {
		version = codecVersionFetch
	}
	b = append(b, version, byte(e.kind))
	for _, u := range []int64{int64(e.status), e.initialAge.Milliseconds(), e.life.Milliseconds(),
		e.swr.Milliseconds(), e.sie.Milliseconds()} {
		b = binary.AppendUvarint(b, uint64(u))
	}
	if version == codecVersionFetch {
		b = append(b, byte(e.fetch))
		b = binary.AppendUvarint(b, uint64(e.fwdStatus))
	}
	b = appendString(b, e.gen)
	b = appendString(b, e.reason)
	b = binary.AppendUvarint(b, uint64(len(e.vary)))
	for _, s := range e.vary {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(e.header)))
	for k, vs := range e.header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, s := range vs {
			b = appendString(b, s)
		}
	}
	return append(b, e.body...), nil
}

// check reports why e cannot be encoded: a kind, status or duration
// outside what the format holds, or a duration finer than a millisecond.
func (e *entry) check() error {
	if e.kind < kindResponse || e.kind > kindPass {
		return fmt.Errorf("httpcache: cannot encode an entry of kind %d", e.kind)
	}
	if e.status < 0 || e.status > maxStatus || e.fwdStatus < 0 || e.fwdStatus > maxStatus {
		return fmt.Errorf("httpcache: cannot encode status %d (run status %d)", e.status, e.fwdStatus)
	}
	if e.fetch > fetchFailed || e.fetch == fetchMiss && e.fwdStatus != 0 {
		return fmt.Errorf("httpcache: cannot encode fetch %d with run status %d", e.fetch, e.fwdStatus)
	}
	for _, d := range []time.Duration{e.initialAge, e.life, e.swr, e.sie} {
		if d < 0 || d > maxLifetime || d%time.Millisecond != 0 {
			return fmt.Errorf("httpcache: cannot encode duration %v: not whole milliseconds within [0, %v]", d, maxLifetime)
		}
	}
	return nil
}

// maxStatus is the largest status code (RFC 9110 15: three digits).
const maxStatus = 999

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (codec) Unmarshal(data []byte, v any) error {
	p, ok := v.(**entry)
	if !ok {
		return fmt.Errorf("httpcache: cannot decode into %T", v)
	}
	d := decoder{b: data}
	version := d.byte()
	if version != codecVersion && version != codecVersionFetch {
		return errBadEntry
	}
	e := &entry{kind: kind(d.byte())}
	if e.kind < kindResponse || e.kind > kindPass {
		return errBadEntry
	}
	e.status = d.status()
	e.initialAge = d.millis()
	e.life = d.millis()
	e.swr = d.millis()
	e.sie = d.millis()
	if version == codecVersionFetch {
		e.fetch = fetchKind(d.byte())
		e.fwdStatus = d.status()
		if e.fetch != fetchRevalidated && e.fetch != fetchFailed {
			return errBadEntry // version 1 holds the others
		}
	}
	e.gen = d.string()
	e.reason = d.string()
	if n := d.count(); n > 0 {
		e.vary = make([]string, n)
		for i := range e.vary {
			e.vary[i] = d.string()
		}
	}
	nh := d.count()
	e.header = make(http.Header, nh)
	for range nh {
		k := d.string()
		vs := make([]string, d.count())
		for i := range vs {
			vs[i] = d.string()
		}
		// A full slice expression: a caller appending to one entry's
		// values must reallocate rather than write into shared memory.
		e.header[k] = vs[:len(vs):len(vs)]
	}
	if d.err {
		return errBadEntry
	}
	e.body = d.b
	*p = e
	return nil
}

// decoder reads the encoding above; any overrun sets err instead of
// panicking.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// status reads a status code: three digits at most.
func (d *decoder) status() int {
	v := d.uvarint()
	if v > maxStatus {
		d.err = true
		return 0
	}
	return int(v)
}

func (d *decoder) millis() time.Duration {
	v := d.uvarint()
	if v > uint64(maxLifetime/time.Millisecond) {
		d.err = true
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

// count reads a length that must fit in what is left.
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.err = true
		d.b = nil
		return 0
	}
	return int(v)
}

func (d *decoder) string() string {
	n := d.count()
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
