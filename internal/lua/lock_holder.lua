-- Holder: KEYS[1] lock key, KEYS[2] fence counter.
-- Returns {lease value, PTTL ms, fence} read in one step, or nil when the
-- lock is free.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
return {v, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
