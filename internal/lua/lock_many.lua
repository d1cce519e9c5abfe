-- lock_one (rebuild.lua) for many keys of one hash slot, in one call.
-- KEYS: value key and lock key of each cache key, in pairs;
-- ARGV[1] lease value, ARGV[2] lease ttl in ms, then what the caller saw of
-- each key, in the order of KEYS.
-- Returns lock_one's reply for each key, in order.
local out = {}
for i = 1, #KEYS / 2 do
  out[i] = lock_one(KEYS[2 * i - 1], KEYS[2 * i], ARGV[1], ARGV[2], ARGV[2 + i])
end
return out
