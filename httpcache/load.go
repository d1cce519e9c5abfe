package httpcache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/stampede-go/stampede"
)

// load is the loader this call gives the core. prev is the stored value
// the run replaces, if any: a stale response being revalidated in the
// background, one kept for revalidation (Entry.Keep), or one refreshed
// early. A stored response is revalidated with its validators; when the
// run fails, the stale copy answers for it where that is allowed.
func (c *call) load(ctx context.Context, key string, prev stampede.Prev[*entry]) (*entry, stampede.Entry, error) {
	m := c.m
	var stale *entry
	var age time.Duration
	if prev.OK && prev.Value.kind == kindResponse && sameVary(prev.Value, c.variant) {
		stale, age = prev.Value, prev.Value.initialAge+prev.Age
	}
	if stale == nil && c.takeRangeMiss() {
		// A range request found nothing stored: its request goes to the
		// handler as it is, and the lease goes back at once. The requests
		// that shared this lookup look again (see lookup).
		return &entry{kind: kindPass, reason: reasonRangeMiss}, stampede.Entry{NoStore: true}, nil
	}
	runKey := "" // a run of its own, but for a revalidation
	if stale != nil {
		runKey = key
	}
	o := m.execute(ctx, c, stale, runKey)
	// Another request's run, whose outcome this load shares, is not c's
	// request's own answer: c's request gets what this load returns.
	own := o.owner == c
	if own {
		defer func() { c.setOwn(o) }()
	}
	switch {
	case o.stream != nil:
		return m.pass(o.reason)
	case o.err != nil || isServerError(o.status):
		cp, ent, err := m.failed(o, stale, age)
		if own && cp != nil {
			served := *o // o may be shared: c's request gets a copy
			served.stale = cp
			o = &served
		}
		return cp, ent, err
	case o.e == nil:
		return m.pass(o.reason)
	}
	// The entry is the response to o.req, which is c.r unless the run was
	// shared: a response that varies is stored under o.req's variant.
	e := o.e
	if c.variant != nil {
		if !slices.Equal(e.vary, c.variant.vary) {
			// The origin varies on other fields now: drop the record, so
			// the next request stores one with the new names.
			if err := m.cache.Delete(ctx, c.primary); err != nil {
				m.failedWrite(ctx, "dropping a Vary record", c.primary, err)
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
	if _, err := m.cache.Fetch(ctx, vk, func(context.Context, string) (*entry, stampede.Entry, error) {
		return e, o.ent, nil
	}); err != nil {
		m.failedWrite(ctx, "storing a variant", vk, err)
	}
	// The record outlives any one variant and is never refreshed: a
	// refresh would draw a new generation and orphan every other variant.
	// Each variant keeps its own freshness under its own key.
	ttl := o.ent.TTL + max(o.ent.Stale, 0) + o.ent.Keep
	return rec, stampede.Entry{TTL: min(max(ttl, varyRecordTTL), maxLifetime), Stale: -1}, nil
}

// failed is the loader's answer for a run o that failed (no response, or a
// 5xx): the stale copy in its place where that is allowed (RFC 5861 4),
// stored so that every server serves it; for a stale response that must
// be revalidated, a run that gave no response is an ErrRevalidationFailed
// (RFC 9111 4.2.4: a 504); anything else fails as the run did, and a kept
// response stays kept for the next try.
func (m *Middleware) failed(o *outcome, stale *entry, age time.Duration) (*entry, stampede.Entry, error) {
	err := o.err
	status := 0
	if err == nil {
		err, status = &originError{o}, o.status
	}
	if stale == nil {
		return nil, stampede.Entry{}, err
	}
	if cp, ent, ok := m.servedOnError(stale, age, status); ok {
		return cp, ent, nil
	}
	if o.err != nil && m.mustRevalidate(stale) {
		return nil, stampede.Entry{}, revalidationFailed(o.err)
	}
	return nil, stampede.Entry{}, err
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
