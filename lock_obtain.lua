-- Obtain: KEYS[1] lock key, KEYS[2] fence counter (same hash slot);
-- ARGV[1] lease value, ARGV[2] ttl ms.
-- Takes the lock if it is free and bumps the fence in the same step, so every
-- later holder of the key sees a strictly greater fence. Returns the fence,
-- or 0 when the lock is held by someone else (fences start at 1).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
