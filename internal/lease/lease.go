// Package lease is the Redis lease shared by the cache's rebuild lock and
// the public Locker: one token format, one compare-and-extend, one
// compare-and-delete (invariants 3 and 4), one keeper that renews it.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stampede-go/stampede/internal/bounded"
	"github.com/stampede-go/stampede/internal/lua"
)

// TokenLen is the length of the random part of a lease value: 128 bits in hex.
const TokenLen = 32

var (
	hostOnce sync.Once
	hostName string
	pidStr   = strconv.Itoa(os.Getpid())
)

// Host is this process's host name as lease values carry it.
func Host() string {
	hostOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown"
		}
		// The separator must not appear inside a field.
		hostName = strings.ReplaceAll(h, "|", "_")
	})
	return hostName
}

// NewValue returns the value stored under a lock key:
// "<128-bit random hex token>|<host>|<pid>|<acquired at, unix ms>".
// The whole value is what release and extend compare, so the metadata costs
// nothing in safety and lets Holder report who holds a lock.
func NewValue() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; if it ever does,
		// a lock guarded by a guessable token is worse than a crash.
		panic("stampede: crypto/rand failed: " + err.Error())
	}
	var sb strings.Builder
	sb.Grow(TokenLen + 64)
	var hx [TokenLen]byte
	hex.Encode(hx[:], b[:])
	sb.Write(hx[:])
	sb.WriteByte('|')
	sb.WriteString(Host())
	sb.WriteByte('|')
	sb.WriteString(pidStr)
	sb.WriteByte('|')
	sb.WriteString(strconv.FormatInt(time.Now().UnixMilli(), 10))
	return sb.String()
}

// Meta is the decoded form of a lease value.
type Meta struct {
	Token      string
	Host       string
	PID        int
	AcquiredAt time.Time
}

// Parse decodes a value written by NewValue. ok is false for
// values in any other format.
func Parse(v string) (m Meta, ok bool) {
	parts := strings.Split(v, "|")
	if len(parts) != 4 || len(parts[0]) != TokenLen {
		return m, false
	}
	pid, err1 := strconv.Atoi(parts[2])
	ms, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return m, false
	}
	return Meta{Token: parts[0], Host: parts[1], PID: pid, AcquiredAt: time.UnixMilli(ms)}, true
}

// ErrLost: the lease is gone, or could not be confirmed in time.
var ErrLost = errors.New("lease lost")

// Extend sets the lock's expiry to ttl if it still holds value
// (compare-and-extend). held is false when the lease was lost.
func Extend(ctx context.Context, rdb redis.Scripter, key, value string, ttl time.Duration) (held bool, err error) {
	n, err := lua.Extend.Run(ctx, rdb, []string{key}, value, ttl.Milliseconds()).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// Release deletes the lock if it still holds value (compare-and-delete).
// held is false when the lease had already been lost. A marker beside the
// lock remembers the release for what was left of the lease, so a request
// re-sent after its reply was lost is told it released (invariant 12).
func Release(ctx context.Context, rdb redis.Scripter, key, value string) (held bool, err error) {
	n, err := lua.Release.Run(ctx, rdb, []string{key, key + ":released"}, value).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// Keep renews the lease on key every ttl/3 until ctx ends (invariant
// 3); the cache's rebuild leases and the Locker's Do and RunOnce all keep
// theirs with it. lastOK is when the request that took the lease was sent;
// renewed, if not nil, is called after each renewal.
//
// It returns nil when ctx ended, and an error wrapping ErrLost when
// the lease was found gone, or could not be confirmed while a third of it
// was left: whatever a renewal does, even hang on a Redis that stopped
// answering, the holder learns in time that it may no longer hold it.
func Keep(ctx context.Context, rdb redis.Scripter, key, value string, ttl time.Duration,
	lastOK time.Time, ctxDeadlines bool, renewed func()) error {
	interval := max(ttl/3, time.Millisecond)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		giveUp := time.Until(lastOK.Add(ttl - interval))
		if giveUp <= 0 {
			return fmt.Errorf("%w: %q could not be renewed in time", ErrLost, key)
		}
		sent := time.Now()
		var held bool
		err := bounded.Call(ctx, giveUp, ctxDeadlines, func(ctx context.Context) error {
			h, err := Extend(ctx, rdb, key, value, ttl)
			held = h
			return err
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, bounded.ErrTimeout):
			return fmt.Errorf("%w: %q could not be renewed in time (Redis did not answer)", ErrLost, key)
		case err == nil && held:
			lastOK = sent
			if renewed != nil {
				renewed()
			}
			t.Reset(interval)
		case err == nil:
			return fmt.Errorf("%w: %q was released, taken over or expired", ErrLost, key)
		case time.Since(lastOK) >= ttl-interval:
			return fmt.Errorf("%w: %q could not be renewed: %w", ErrLost, key, err)
		default:
			// A transient error: try again sooner than usual, while the
			// lease still has at least a third of ttl left.
			t.Reset(max(interval/4, time.Millisecond))
		}
	}
}
