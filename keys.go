package stampede

import (
	"fmt"
	"strings"
	"time"
)

// checkKey applies the rules of every key, cache or lock: not empty, at
// most maxLen bytes, and not starting with '}', which would give its Redis
// keys an empty hash tag, so Cluster would hash each whole and split them
// across slots.
func checkKey(key string, maxLen int) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > maxLen:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalidKey, len(key), maxLen)
	case key[0] == '}':
		return fmt.Errorf("%w: key %q starts with '}'", ErrInvalidKey, key)
	}
	return nil
}

// valueKey and lockKey share the hash tag {key}, so the scripts touch one
// Cluster slot.
func (c *Cache[V]) valueKey(key string) string {
	return c.opts.Namespace + ":{" + key + "}"
}

func (c *Cache[V]) lockKey(key string) string { return c.valueKey(key) + ":lock" }

func (c *Cache[V]) keys(key string) []string {
	vk := c.valueKey(key)
	return []string{vk, vk + ":lock"}
}

func pxMillis(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// cacheKeyOf returns the cache key whose value (valueKey) or lease
// (lockKey, lock true) the Redis key rk is, for the tracking messages that
// name Redis keys; ok is false for a key of neither form.
func (c *Cache[V]) cacheKeyOf(rk string) (key string, lock, ok bool) {
	ns := c.opts.Namespace
	if !strings.HasPrefix(rk, ns) || !strings.HasPrefix(rk[len(ns):], ":{") {
		return "", false, false
	}
	rest := rk[len(ns)+2:]
	// A value key ends with '}', never with "}:lock".
	if k, ok := strings.CutSuffix(rest, "}:lock"); ok && k != "" {
		return k, true, true
	}
	if k, ok := strings.CutSuffix(rest, "}"); ok && k != "" {
		return k, false, true
	}
	return "", false, false
}
