package stampede

import (
	"errors"
	"fmt"
	"time"
)

func (c *Cache[V]) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > c.opts.MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than MaxKeyLen (%d)", ErrInvalidKey, len(key), c.opts.MaxKeyLen)
	case key[0] == '}':
		return fmt.Errorf("%w: key starts with '}'", ErrInvalidKey)
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

func checkLockKey(key string) error {
	switch {
	case key == "":
		return errors.New("stampede: empty lock key")
	case len(key) > MaxLockKeyLen:
		return fmt.Errorf("stampede: lock key is %d bytes, longer than %d", len(key), MaxLockKeyLen)
	case key[0] == '}':
		// "ns:{}..." has an empty hash tag, so Cluster would hash the whole
		// key and put the lease and its fence counter in different slots.
		return fmt.Errorf("stampede: lock key %q starts with '}'", key)
	}
	return nil
}
