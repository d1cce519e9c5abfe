-- Remaining lease: KEYS[1] lock key, ARGV[1] lease value.
-- Returns the PTTL in ms if the caller still holds the lease, else -3.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PTTL', KEYS[1])
end
return -3
