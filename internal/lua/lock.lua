-- Read the value, or take the rebuild lease when there is none to use.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] lease value, ARGV[2] lease ttl in ms,
-- ARGV[3] what the caller saw: '' on a miss (any value is news to it),
--   the write id (entry bytes 4-11) of the entry it wants to refresh, or
--   '*' to go for the lease past an undecodable value.
-- Returns {0, value, pttl} when there is a value the caller has not seen
-- (for a refresh: one written since, so nothing is left to do),
-- {1} when the lease was taken, {2} when another holder has it.
--
-- Idempotent for one lease value: a request re-sent after its reply was
-- lost finds its own lease and is told it won. A value key of another type
-- counts as no value (the fill overwrites it). A lock key that is not a
-- lease of this package, or has no expiry, is given at most the lease ttl
-- to live, so that it cannot block its key for longer.
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then
  v = nil
end
if v and ARGV[3] ~= '*' and (ARGV[3] == '' or string.sub(v, 4, 11) ~= ARGV[3]) then
  return {0, v, redis.call('PTTL', KEYS[1])}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
local holder = redis.pcall('GET', KEYS[2])
if holder == ARGV[1] then
  return {1}
end
local ttl = redis.call('PTTL', KEYS[2])
local lease = type(holder) == 'string' and string.find(holder, '^%x+|') == 1 and string.sub(holder, 33, 33) == '|'
if ttl == -1 or (not lease and ttl > tonumber(ARGV[2])) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {2}
