-- Compare-and-extend of many leases with one lease value, in one call.
-- KEYS: lock keys (one hash slot); ARGV[1] lease value, ARGV[2] ttl ms.
-- Returns, per key, 1 if the caller still held it and its expiry was reset,
-- else 0.
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    out[i] = redis.call('PEXPIRE', key, ARGV[2])
  else
    out[i] = 0
  end
end
return out
