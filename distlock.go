package stampede

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "embed"

	"github.com/redis/go-redis/v9"
)

// This file holds the Redis lease shared by the cache's rebuild lock and the
// public Locker: one token format, one compare-and-extend, one
// compare-and-delete (invariants 3 and 4).

//go:embed extend.lua
var extendSrc string

//go:embed release.lua
var releaseSrc string

var (
	extendScript  = redis.NewScript(extendSrc)
	releaseScript = redis.NewScript(releaseSrc)
)

// tokenLen is the length of the random part of a lease value: 128 bits in hex.
const tokenLen = 32

var (
	hostOnce sync.Once
	hostName string
	pidStr   = strconv.Itoa(os.Getpid())
)

func host() string {
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

// newLeaseValue returns the value stored under a lock key:
// "<128-bit random hex token>|<host>|<pid>|<acquired at, unix ms>".
// The whole value is what release and extend compare, so the metadata costs
// nothing in safety and lets Holder report who holds a lock.
func newLeaseValue() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; if it ever does,
		// a lock guarded by a guessable token is worse than a crash.
		panic("stampede: crypto/rand failed: " + err.Error())
	}
	var sb strings.Builder
	sb.Grow(tokenLen + 64)
	var hx [tokenLen]byte
	hex.Encode(hx[:], b[:])
	sb.Write(hx[:])
	sb.WriteByte('|')
	sb.WriteString(host())
	sb.WriteByte('|')
	sb.WriteString(pidStr)
	sb.WriteByte('|')
	sb.WriteString(strconv.FormatInt(time.Now().UnixMilli(), 10))
	return sb.String()
}

// leaseMeta is the decoded form of a lease value.
type leaseMeta struct {
	Token      string
	Host       string
	PID        int
	AcquiredAt time.Time
}

// parseLeaseValue decodes a value written by newLeaseValue. ok is false for
// values in any other format.
func parseLeaseValue(v string) (m leaseMeta, ok bool) {
	parts := strings.Split(v, "|")
	if len(parts) != 4 || len(parts[0]) != tokenLen {
		return m, false
	}
	pid, err1 := strconv.Atoi(parts[2])
	ms, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return m, false
	}
	return leaseMeta{Token: parts[0], Host: parts[1], PID: pid, AcquiredAt: time.UnixMilli(ms)}, true
}

// extendLease sets the lock's expiry to ttl if it still holds value
// (compare-and-extend). held is false when the lease was lost.
func extendLease(ctx context.Context, rdb redis.Scripter, key, value string, ttl time.Duration) (held bool, err error) {
	n, err := extendScript.Run(ctx, rdb, []string{key}, value, ttl.Milliseconds()).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// releaseLease deletes the lock if it still holds value (compare-and-delete).
// held is false when the lease had already been lost.
func releaseLease(ctx context.Context, rdb redis.Scripter, key, value string) (held bool, err error) {
	n, err := releaseScript.Run(ctx, rdb, []string{key}, value).Int64()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}
