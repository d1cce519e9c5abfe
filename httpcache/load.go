package httpcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/stampede-go/stampede"
)

// load is the loader this call gives the core.
func (c *call) load(lctx context.Context, key string) (*entry, stampede.Entry, error) {
	m := c.m
	if c.takeRangeMiss() {
		// A range request found nothing stored: its request goes to the
		// handler as it is, and the lease goes back at once. The requests
		// that shared this lookup look again (see lookup).
		return &entry{kind: kindPass, reason: reasonRangeMiss}, stampede.Entry{NoStore: true}, nil
	}
	o, ok := m.flight.do(lctx, key, func() *outcome { return m.execute(lctx, c) })
	if !ok {
		return nil, stampede.Entry{}, context.Cause(lctx)
	}
	switch {
	case o.err != nil:
		return nil, stampede.Entry{}, o.err
	case o.stream != nil:
		return m.pass(o.reason)
	case isServerError(o.status):
		return nil, stampede.Entry{}, &originError{o}
	case o.e == nil:
		return m.pass(o.reason)
	}
	e := o.e
	if c.variant != nil {
		if !slices.Equal(e.vary, c.variant.vary) {
			// The origin varies on other fields now: drop the record, so
			// the next request stores one with the new names.
			if err := m.cache.Delete(lctx, c.primary); err != nil && m.opts.OnError != nil {
				m.opts.OnError(c.primary, err)
			}
			return m.pass("vary-changed")
		}
		return e, o.ent, nil
	}
	if len(e.vary) == 0 {
		return e, o.ent, nil
	}
	// The response varies: store it under its variant's key, and a Vary
	// record under the primary key. The record's generation is part of the
	// variant keys, so purging the primary key orphans all the variants.
	rec := &entry{kind: kindVary, vary: e.vary, gen: newGen()}
	vk := variantKey(key, rec.gen, e.vary, o.req)
	if _, err := m.cache.Fetch(lctx, vk, func(context.Context, string) (*entry, stampede.Entry, error) {
		return e, o.ent, nil
	}); err != nil && m.opts.OnError != nil {
		m.opts.OnError(vk, err)
	}
	// The record outlives any one variant and is never refreshed: a
	// refresh would draw a new generation and orphan every other variant.
	// Each variant keeps its own freshness under its own key.
	return rec, stampede.Entry{TTL: min(max(o.ent.TTL+max(o.ent.Stale, 0), varyRecordTTL), maxLifetime), Stale: -1}, nil
}

// varyRecordTTL is the least a Vary record lives. It only maps a URL to the
// fields its responses vary on; a change of those fields drops it.
const varyRecordTTL = time.Hour

// sameVary says whether response e may answer every request that looked up
// the key of rec: the same Vary fields, or none for a primary key.
func sameVary(e, rec *entry) bool {
	if rec == nil {
		return len(e.vary) == 0
	}
	return slices.Equal(e.vary, rec.vary)
}

// pass returns the hit-for-miss marker.
func (m *Middleware) pass(reason string) (*entry, stampede.Entry, error) {
	return &entry{kind: kindPass, reason: reason}, stampede.Entry{TTL: m.opts.HitForMissTTL, Stale: -1}, nil
}

func newGen() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
