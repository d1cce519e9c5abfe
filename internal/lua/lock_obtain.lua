-- Obtain: KEYS[1] lock key, KEYS[2] fence counter (same hash slot);
-- ARGV[1] lease value, ARGV[2] ttl ms, ARGV[3] fence retention ms (0: the
-- counter never expires).
-- Takes the lock if it is free and raises the fence in the same step.
-- Returns the fence, or 0 when the lock is held by someone else.
--
-- The fence is max(counter + 1, server time in microseconds): strictly
-- increasing per key while the counter lives, and still increasing after
-- it expired as long as the server's clock does not step back.
-- Idempotent: a request re-sent after its reply was lost finds its own
-- lease and gets its fence again. A counter that is not an integer is an
-- error, and then no lease is left behind.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if holder then
  return 0
end
local prev = redis.call('GET', KEYS[2])
local n = 0
if prev then
  n = tonumber(prev)
  if not n or n ~= math.floor(n) or n < 0 then
    return redis.error_reply('ERR fence counter ' .. KEYS[2] .. ' holds ' .. string.format('%q', prev) .. ', not a fence')
  end
end
local t = redis.call('TIME')
n = math.max(n + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], string.format('%.0f', n), 'PX', ARGV[3])
else
  redis.call('SET', KEYS[2], string.format('%.0f', n))
end
return n
