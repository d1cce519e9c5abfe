-- Fenced write-back of one key (fill_one in rebuild.lua).
-- KEYS[1] value key, KEYS[2] lock key (same hash slot);
-- ARGV[1] lease value, ARGV[2] entry bytes ('' stores nothing),
-- ARGV[3] value PX in ms, ARGV[4] channel, ARGV[5] message.
return fill_one(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
