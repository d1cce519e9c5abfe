package stampede

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Loaded is one key's value from a FetchMany loader, with how to store it.
type Loaded[V any] struct {
	Value V
	Entry Entry
}

// GetMany returns the values of keys, loading the missing ones with one
// call of load for all the keys this node is to load, and with the same
// fleet-wide protection as Get for every key: one load per key and expiry
// across the fleet, each key's write-back fenced by its own lease, waiters
// woken by each key's fill.
//
// load is given the keys to load and returns the values it found; a key it
// leaves out is not found (cached as a tombstone like ErrNotFound). The
// result holds every key with a value; keys not found are absent from it.
// Keys that failed (a loader error, Redis failing closed, the caller's ctx
// ending while another node still loads them) are absent too, and the
// error is a *BatchError naming them; a nil error means every key was
// served or not found. Duplicate keys are served once.
//
// Round trips: an L1 hit for every key costs none; otherwise one call of
// lock.lua per Cluster slot (or Ring shard) for the keys L1 lacks, which
// reads what Redis has and takes the leases of what it lacks, then one
// fill per slot group for the keys this node loaded.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]V, error)) (map[string]V, error) {
	if load == nil {
		return nil, ErrNilLoader
	}
	res, err := c.fetchMany(ctx, keys, manyLoader[V]{plain: load})
	out := make(map[string]V, len(res))
	for k, r := range res {
		out[k] = r.Value
	}
	return out, err
}

// FetchMany is GetMany with a loader that can steer how each value is
// stored (Loaded.Entry: its TTL, stale window, keep window, or no storage),
// and with a Result for each key: where its value came from, its age, and
// for a stale copy the error of the load that should have replaced it.
func (c *Cache[V]) FetchMany(ctx context.Context, keys []string, load func(ctx context.Context, missing []string) (map[string]Loaded[V], error)) (map[string]Result[V], error) {
	if load == nil {
		return nil, ErrNilLoader
	}
	return c.fetchMany(ctx, keys, manyLoader[V]{full: load})
}

// BatchError is the error of GetMany and FetchMany when keys failed: each
// with its error. Keys that were merely not found are not failures.
type BatchError struct {
	Errs map[string]error
}

// Error names the failed keys and the first errors.
func (e *BatchError) Error() string {
	keys := make([]string, 0, len(e.Errs))
	for k := range e.Errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "stampede: %d key(s) failed", len(keys))
	for i, k := range keys {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, "; %q: %v", k, e.Errs[k])
	}
	return b.String()
}

// Unwrap returns the keys' errors, so that errors.Is and errors.As see
// them (context.Canceled, a loader's error, a *PanicError). An error that
// failed several keys is there several times: errors need not be
// comparable, so they are not told apart.
func (e *BatchError) Unwrap() []error {
	out := make([]error, 0, len(e.Errs))
	for _, err := range e.Errs {
		out = append(out, err)
	}
	return out
}

// manyLoader holds one of the two batch loader shapes.
type manyLoader[V any] struct {
	plain func(context.Context, []string) (map[string]V, error)
	full  func(context.Context, []string) (map[string]Loaded[V], error)
}

func (l manyLoader[V]) call(ctx context.Context, keys []string) (map[string]Loaded[V], error) {
	if l.full != nil {
		return l.full(ctx, keys)
	}
	m, err := l.plain(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Loaded[V], len(m))
	for k, v := range m {
		out[k] = Loaded[V]{Value: v}
	}
	return out, nil
}

// one adapts a batch loader to one key, for the refreshes of single keys
// (XFetch on an L1 hit).
func (l manyLoader[V]) one() loader[V] {
	return loader[V]{full: func(ctx context.Context, key string) (V, Entry, error) {
		m, err := l.call(ctx, []string{key})
		if err != nil {
			var zero V
			return zero, Entry{}, err
		}
		got, ok := m[key]
		if !ok {
			var zero V
			return zero, Entry{}, ErrNotFound
		}
		return got.Value, got.Entry, nil
	}}
}

// fetchMany is the caller's side of a batch: L1, then the calls in flight
// for its keys, joined or made; the batch's own work (batchrun.go) runs
// detached from the caller, so that those who join its calls do not depend
// on the caller staying.
func (c *Cache[V]) fetchMany(ctx context.Context, keys []string, ld manyLoader[V]) (map[string]Result[V], error) {
	out := make(map[string]Result[V], len(keys))
	errs := map[string]error{}
	fail := func(key string, err error) {
		if !errors.Is(err, ErrNotFound) {
			errs[key] = err
		}
	}
	seen := make(map[string]bool, len(keys))
	var rest []string // keys L1 does not serve
	var stale map[string]*localEntry[V]
	now := c.now()
	for _, key := range keys {
		if seen[key] {
			continue
		}
		seen[key] = true
		if err := checkKey(key, c.opts.MaxKeyLen); err != nil {
			fail(key, err)
			continue
		}
		e := c.getL1(key)
		if e != nil && now < e.freshUntil {
			if now >= e.earlyFrom {
				c.refreshEarly(ctx, key, ld.one(), e, now)
			}
			c.note(ctx, EventLocalHit, key)
			if r, err := e.result(SourceLocal, now); err != nil {
				fail(key, err)
			} else {
				out[key] = r
			}
			continue
		}
		if e != nil && now < e.staleUntil {
			if c.refreshRunning(key) {
				// Being refreshed by this process: served as it is.
				c.note(ctx, EventStale, key)
				if r, err := c.staleResult(key, e); err != nil {
					fail(key, err)
				} else {
					out[key] = r
				}
				continue
			}
			if stale == nil {
				stale = map[string]*localEntry[V]{}
			}
			stale[key] = e
		}
		rest = append(rest, key)
	}
	if len(rest) > 0 {
		if !c.enter() {
			for _, key := range rest {
				fail(key, ErrClosed)
			}
		} else {
			calls, made := c.loads.claim(rest)
			var mine []string
			mineCalls := map[string]*flightCall[Result[V]]{}
			for i, key := range rest {
				if made[i] {
					mine = append(mine, key)
					mineCalls[key] = calls[i]
				}
			}
			if len(mine) > 0 {
				b := &batch[V]{c: c, ld: ld, calls: mineCalls, stale: stale}
				go b.run(context.WithoutCancel(ctx), mine)
			} else {
				c.wg.Done()
			}
			for i, key := range rest {
				call := calls[i]
				if !call.await(ctx) {
					fail(key, ctx.Err())
					continue
				}
				r, err := call.res, call.err
				if err != nil {
					fail(key, err)
					continue
				}
				r.Waited = r.Waited || !made[i]
				out[key] = r
			}
		}
	}
	if len(errs) > 0 {
		return out, &BatchError{Errs: errs}
	}
	return out, nil
}
