// Package entry is the format of a cached value in Redis: a small binary
// header followed by the codec's bytes.
//
//	byte 0      magic (0xA7)
//	byte 1      format version (1, or 2 when a keep window follows)
//	byte 2      flags (1: tombstone, the loader said not found)
//	bytes 3-10  write id: random per write, so that a refresh can tell the
//	            entry it read from one written since (lock.lua and fill.lua
//	            compare these bytes)
//	uvarint     fresh TTL in milliseconds
//	uvarint     stale window in milliseconds
//	uvarint     duration of the load that produced it, in microseconds
//	            (XFetch's delta)
//	uvarint     version 2 only: keep window in milliseconds
//	...         payload
//
// The Redis PX of the value key is TTL + stale window + keep window, so the
// remaining PTTL, read from the Redis server's clock, tells freshness and
// age. Entries without a keep window are written as version 1, which every
// release reads.
package entry

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

const (
	magic = 0xA7

	flagTombstone = 1 << 0

	// idOffset and idLen place the write id; the scripts read it there.
	idOffset = 3
	idLen    = 8

	// MaxHeaderLen bounds the header: three bytes, the id, four uvarints.
	MaxHeaderLen = idOffset + idLen + 4*binary.MaxVarintLen64
)

// ErrCorrupt is what Decode returns for bytes that are not an entry of a
// known version.
var ErrCorrupt = errors.New("stampede: corrupt or foreign entry")

// ID is a write id.
type ID uint64

// NewID returns the id of a new write.
func NewID() ID { return ID(rand.Uint64()) }

// Arg returns id as the scripts compare it: the entry's bytes 3-10.
func (id ID) Arg() string {
	var b [idLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(id))
	return string(b[:])
}

// Header is the decoded form of an entry's header. Durations are stored in
// whole milliseconds (Delta in microseconds); negative ones as zero.
type Header struct {
	ID        ID
	Tombstone bool
	TTL       time.Duration
	Stale     time.Duration
	Delta     time.Duration // how long the load that produced it took
	Keep      time.Duration // past TTL+Stale, kept for the next load only
}

// Append appends h and payload to dst.
func Append(dst []byte, h Header, payload []byte) []byte {
	var flags byte
	if h.Tombstone {
		flags |= flagTombstone
	}
	keep := max(h.Keep.Milliseconds(), 0)
	version := byte(1)
	if keep > 0 {
		version = 2
	}
	dst = append(dst, magic, version, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.ID))
	dst = binary.AppendUvarint(dst, uint64(max(h.TTL.Milliseconds(), 0)))
	dst = binary.AppendUvarint(dst, uint64(max(h.Stale.Milliseconds(), 0)))
	dst = binary.AppendUvarint(dst, uint64(max(h.Delta.Microseconds(), 0)))
	if version == 2 {
		dst = binary.AppendUvarint(dst, uint64(keep))
	}
	return append(dst, payload...)
}

// Decode splits b into its header and payload. Any byte string that is not
// a well-formed entry of a known version yields ErrCorrupt; it never
// panics. Whatever Append wrote, Decode reads back.
func Decode(b []byte) (h Header, payload []byte, err error) {
	if len(b) < idOffset+idLen || b[0] != magic || b[1] < 1 || b[1] > 2 || b[2]&^flagTombstone != 0 {
		return h, nil, ErrCorrupt
	}
	h.Tombstone = b[2]&flagTombstone != 0
	h.ID = ID(binary.BigEndian.Uint64(b[idOffset:]))
	rest := b[idOffset+idLen:]
	units := []time.Duration{time.Millisecond, time.Millisecond, time.Microsecond, time.Millisecond}
	if b[1] == 1 {
		units = units[:3]
	}
	var vals [4]time.Duration
	for i, unit := range units {
		v, n := binary.Uvarint(rest)
		if n <= 0 || v > uint64(math.MaxInt64/unit) {
			return Header{}, nil, ErrCorrupt
		}
		vals[i] = time.Duration(v) * unit
		rest = rest[n:]
	}
	h.TTL, h.Stale, h.Delta, h.Keep = vals[0], vals[1], vals[2], vals[3]
	if b[1] == 2 && h.Keep == 0 {
		return Header{}, nil, ErrCorrupt // version 2 is only written with a keep window
	}
	if h.Tombstone && len(rest) != 0 {
		return Header{}, nil, ErrCorrupt
	}
	return h, rest, nil
}
