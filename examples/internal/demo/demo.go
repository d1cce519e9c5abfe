// Package demo holds what the examples need but are not about: a Redis to
// share (an embedded miniredis unless a real server's address is given) and
// a throwaway SQLite database.
package demo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// Redis is the Redis server the simulated nodes of an example share.
type Redis struct {
	addr string
	mini *miniredis.Miniredis // nil for a real server
}

// StartRedis returns the server at addr, or, when addr is empty, starts an
// embedded miniredis on a free loopback port, so that separate clients (and
// separate processes) can reach it like a real one.
func StartRedis(ctx context.Context, addr string) (*Redis, error) {
	if addr != "" {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("redis at %s: %w", addr, err)
		}
		return &Redis{addr: addr}, nil
	}
	m := miniredis.NewMiniRedis()
	// miniredis counts TTLs down only when told to; leases and cached
	// values must expire in real time here, as they do in Redis.
	m.ClockTTL(true)
	if err := m.Start(); err != nil {
		return nil, fmt.Errorf("miniredis: %w", err)
	}
	return &Redis{addr: m.Addr(), mini: m}, nil
}

// Addr is the server's address.
func (r *Redis) Addr() string { return r.addr }

// String says which Redis this is, for the examples' first line.
func (r *Redis) String() string {
	if r.mini != nil {
		return "embedded miniredis"
	}
	return "redis at " + r.addr
}

// Client returns a new client: one per simulated node, as each server of a
// fleet has its own connections.
func (r *Redis) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr})
}

// Close deletes the keys under prefix (an example's namespace, so a real
// server is left as it was found) and stops the embedded server, if any.
func (r *Redis) Close(ctx context.Context, prefix string) error {
	if r.mini != nil {
		r.mini.Close()
		return nil
	}
	c := r.Client()
	defer c.Close()
	iter := c.Scan(ctx, 0, prefix+":*", 100).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

// Namespace returns name with a random suffix, so that runs sharing a real
// Redis (or tests running in parallel) never see each other's keys.
func Namespace(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails
	return name + "-" + hex.EncodeToString(b)
}

// SQLite is a database in a file of a fresh temporary directory.
type SQLite struct {
	Path string
	dir  string
}

// NewSQLite makes the temporary directory for a database file called name.
func NewSQLite(name string) (*SQLite, error) {
	dir, err := os.MkdirTemp("", "stampede-example-")
	if err != nil {
		return nil, err
	}
	return &SQLite{Path: filepath.Join(dir, name), dir: dir}, nil
}

// Open opens a connection pool on the file. Each simulated node opens its
// own, as separate servers would. WAL lets readers run beside a writer;
// the busy timeout makes a writer wait its turn instead of failing.
func (s *SQLite) Open() (*sql.DB, error) {
	return sql.Open("sqlite", s.Path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
}

// Remove deletes the database and its directory.
func (s *SQLite) Remove() error { return os.RemoveAll(s.dir) }
