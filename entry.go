package stampede

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

// The stored entry: a small binary header followed by the codec's bytes.
//
//	byte 0      magic (0xA7)
//	byte 1      format version (1)
//	byte 2      flags (flagTombstone)
//	bytes 3-10  write id: random per write, so that a refresh can tell the
//	            entry it read from one written since (lock.lua compares it)
//	uvarint     fresh TTL in milliseconds
//	uvarint     stale window in milliseconds
//	uvarint     duration of the load that produced it, in microseconds (XFetch's delta)
//	...         payload
//
// The Redis PX of the value key is TTL + stale window, so the remaining PTTL,
// read from the Redis server's clock, tells freshness and age (invariant 5).

const (
	entryMagic   = 0xA7
	entryVersion = 1

	flagTombstone = 1 << 0

	// idOffset and idLen place the write id; lock.lua reads it there.
	idOffset = 3
	idLen    = 8

	// maxHeaderLen bounds the header: three bytes, the id, three uvarints.
	maxHeaderLen = idOffset + idLen + 3*binary.MaxVarintLen64
)

var errCorrupt = errors.New("stampede: corrupt or foreign entry")

// header is the decoded form of an entry's header.
type header struct {
	id        uint64 // write id
	tombstone bool
	ttl       time.Duration
	stale     time.Duration
	delta     time.Duration // how long the last load took
}

// appendEntry appends h and payload to dst.
func appendEntry(dst []byte, h header, payload []byte) []byte {
	var flags byte
	if h.tombstone {
		flags |= flagTombstone
	}
	dst = append(dst, entryMagic, entryVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, h.id)
	dst = binary.AppendUvarint(dst, uint64(max(h.ttl.Milliseconds(), 0)))
	dst = binary.AppendUvarint(dst, uint64(max(h.stale.Milliseconds(), 0)))
	dst = binary.AppendUvarint(dst, uint64(max(h.delta.Microseconds(), 0)))
	return append(dst, payload...)
}

// decodeEntry splits b into its header and payload. Any byte string that is
// not a well-formed entry of a known version yields errCorrupt; it never
// panics.
func decodeEntry(b []byte) (h header, payload []byte, err error) {
	if len(b) < idOffset+idLen || b[0] != entryMagic || b[1] != entryVersion || b[2]&^flagTombstone != 0 {
		return h, nil, errCorrupt
	}
	h.tombstone = b[2]&flagTombstone != 0
	h.id = binary.BigEndian.Uint64(b[idOffset:])
	rest := b[idOffset+idLen:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(rest)
		if n <= 0 || v > math.MaxInt64/uint64(time.Millisecond) {
			return header{}, nil, errCorrupt
		}
		vals[i] = v
		rest = rest[n:]
	}
	h.ttl = time.Duration(vals[0]) * time.Millisecond
	h.stale = time.Duration(vals[1]) * time.Millisecond
	h.delta = time.Duration(vals[2]) * time.Microsecond
	if h.tombstone && len(rest) != 0 {
		return header{}, nil, errCorrupt
	}
	return h, rest, nil
}

// newWriteID returns the id of a new write.
func newWriteID() uint64 { return rand.Uint64() }

// idArg is h's write id as lock.lua compares it: the entry's bytes 3-10.
func idArg(id uint64) string {
	var b [idLen]byte
	binary.BigEndian.PutUint64(b[:], id)
	return string(b[:])
}
