-- Compare-and-extend: KEYS[1] lock key, ARGV[1] lease value, ARGV[2] ttl ms.
-- Returns 1 if the caller still held the lease and its expiry was reset, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
