-- Read the value, or take the rebuild lease when there is none to use.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] lease value, ARGV[2] lease ttl in ms,
-- ARGV[3] what the caller saw: '' on a miss (any value is news to it),
--   the write id (entry bytes 4-11) of the entry it wants to refresh, or
--   '*' to go for the lease past an undecodable value.
-- Returns {0, value, pttl} when there is a value the caller has not seen
-- (for a refresh: one written since, so nothing is left to do),
-- {1} when the lease was taken, {2} when another holder has it.
local v = redis.call('GET', KEYS[1])
if v and ARGV[3] ~= '*' and (ARGV[3] == '' or string.sub(v, 4, 11) ~= ARGV[3]) then
  return {0, v, redis.call('PTTL', KEYS[1])}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {2}
