-- Obtain: KEYS[1] lock key, KEYS[2] fence counter (same hash slot);
-- ARGV[1] lease value, ARGV[2] ttl ms, ARGV[3] fence retention ms.
-- Returns the fence, or 0 when the lock is held by someone else (see take).
return take(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
