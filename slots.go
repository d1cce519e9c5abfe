package stampede

import (
	"strings"

	"github.com/redis/go-redis/v9"
)

// group is cache keys whose scripts run in one call: the keys of one
// Cluster hash slot, of one Ring shard, or all keys on a single server.
type group struct {
	rdb  redis.Scripter
	keys []string
}

// groups splits keys into the calls a batch makes (one round trip each).
func (c *Cache[V]) groups(keys []string) []group {
	by := map[any]*group{}
	var order []any
	for _, key := range keys {
		var id any
		rdb := redis.Scripter(c.rdb)
		switch r := c.rdb.(type) {
		case *redis.ClusterClient:
			id = slot(c.valueKey(key))
		case *redis.Ring:
			// A Ring runs a script on the shard of its first key; keys of
			// other shards would be read and written there.
			shard, err := r.GetShardClientForKey(c.valueKey(key))
			if err != nil {
				id = key // no shard: a call of its own fails on its own
			} else {
				id, rdb = shard, shard
			}
		}
		g := by[id]
		if g == nil {
			g = &group{rdb: rdb}
			by[id] = g
			order = append(order, id)
		}
		g.keys = append(g.keys, key)
	}
	out := make([]group, len(order))
	for i, id := range order {
		out[i] = *by[id]
	}
	return out
}

// slot is a key's Redis Cluster hash slot: CRC16 of its hash tag (the part
// between the first '{' and the first '}' after it, when not empty) or of
// the whole key, modulo 16384.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
