-- Read the value, or take the rebuild lease when there is none to use
-- (lock_one in rebuild.lua).
-- KEYS[1] value key, KEYS[2] lock key (same hash slot);
-- ARGV[1] lease value, ARGV[2] lease ttl in ms, ARGV[3] what the caller saw.
return lock_one(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
