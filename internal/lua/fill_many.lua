-- fill_one (rebuild.lua) for many keys of one hash slot, in one call: each
-- key is written only if its own lease still holds.
-- KEYS: value key and lock key of each cache key, in pairs;
-- ARGV[1] lease value, ARGV[2] channel, then for each key its entry bytes
-- ('' stores nothing), its PX in ms and its message.
-- Returns fill_one's reply for each key, in order.
local out = {}
for i = 1, #KEYS / 2 do
  local a = 3 * i
  out[i] = fill_one(KEYS[2 * i - 1], KEYS[2 * i], ARGV[1], ARGV[a], ARGV[a + 1], ARGV[2], ARGV[a + 2])
end
return out
