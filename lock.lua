-- Read the value, or take the rebuild lease when there is none to use.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] lease value, ARGV[2] lease ttl in ms,
-- ARGV[3] the value's PTTL the caller saw, or -1 on a miss.
-- Returns {0, value, pttl} when there is a value the caller has not seen
-- (a miss: any value; a refresh: one rewritten since, so PTTL went up),
-- {1} when the lease was taken, {2} when another holder has it.
local v = redis.call('GET', KEYS[1])
if v then
  local p = redis.call('PTTL', KEYS[1])
  local seen = tonumber(ARGV[3])
  if seen < 0 or p > seen then
    return {0, v, p}
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {2}
