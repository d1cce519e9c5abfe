-- RunOnce finish: KEYS[1] lock key, KEYS[2] done marker (one hash slot);
-- ARGV[1] lease value, ARGV[2] window, ARGV[3] marker ttl ms.
-- Marks the window done only while the caller still holds the lease, so a
-- run whose lease ran out (another run may be under way) leaves the window
-- open. Returns 1 when marked, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
