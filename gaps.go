package stampede

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// gapTracker notices lost messages: every node numbers the messages it
// publishes, and a number that does not arrive while later ones do is a
// lost invalidation (invariant 11). Messages of one publisher may arrive
// out of order (its scripts run on several connections, or on several
// shards), so a hole counts as lost only when it stays open for gapGrace.
// State is per publisher that this node hears: it grows with the fleet,
// not with its square, and nothing is sent for it.
type gapTracker struct {
	mu   sync.Mutex         // guards pubs
	pubs map[string]*pubSeq // node id -> what was heard from it
}

// pubSeq is what one publisher's sequence looks like from here.
type pubSeq struct {
	next      uint64              // the lowest number not yet heard
	ahead     map[uint64]struct{} // numbers heard above next
	holeSince time.Duration       // when the oldest open hole was noticed
	heard     time.Duration       // when the publisher was last heard
}

const (
	// gapGrace is how long a hole may stay open before it counts as lost.
	gapGrace = 500 * time.Millisecond
	// maxAhead bounds the numbers held above a hole.
	maxAhead = 4096
	// forgetAfter drops publishers not heard for this long (nodes that
	// went away; a node that comes back starts a new sequence anyway).
	forgetAfter = 10 * time.Minute
)

// observe records number seq from publisher pub, heard at now. It reports
// whether a message of pub is now known lost.
func (g *gapTracker) observe(pub string, seq uint64, now time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pubs == nil {
		g.pubs = make(map[string]*pubSeq)
	}
	p := g.pubs[pub]
	if p == nil {
		g.pubs[strings.Clone(pub)] = &pubSeq{next: seq + 1, heard: now}
		return false
	}
	p.heard = now
	switch {
	case seq < p.next: // late or repeated
	case seq == p.next:
		p.next++
		for len(p.ahead) > 0 {
			if _, ok := p.ahead[p.next]; !ok {
				break
			}
			delete(p.ahead, p.next)
			p.next++
		}
	default:
		if len(p.ahead) == 0 {
			p.ahead = make(map[uint64]struct{})
			p.holeSince = now
		}
		p.ahead[seq] = struct{}{}
		if len(p.ahead) > maxAhead {
			p.skip()
			return true
		}
	}
	if len(p.ahead) > 0 && now-p.holeSince >= gapGrace {
		p.skip()
		return true
	}
	return false
}

// sweep reports whether any publisher has a hole older than gapGrace, and
// forgets publishers not heard from for forgetAfter.
func (g *gapTracker) sweep(now time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	lost := false
	for id, p := range g.pubs {
		if len(p.ahead) > 0 && now-p.holeSince >= gapGrace {
			p.skip()
			lost = true
		}
		if len(p.ahead) == 0 && now-p.heard >= forgetAfter {
			delete(g.pubs, id)
		}
	}
	return lost
}

// reset forgets every publisher: after a flush, earlier holes no longer
// matter.
func (g *gapTracker) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.pubs)
}

// skip gives up on p's holes: the sequence goes on after the highest
// number heard.
func (p *pubSeq) skip() {
	p.next = slices.Max(slices.Collect(maps.Keys(p.ahead))) + 1
	p.ahead = nil
}
