-- RunOnce start: KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] done marker
-- (one hash slot); ARGV[1] lease value, ARGV[2] ttl ms, ARGV[3] interval ms,
-- ARGV[4] fence retention ms (0: the counter never expires).
-- The window is numbered on the Redis server's clock, so every host agrees
-- on it. Returns {fence, window}: fence is 0 when this window is already
-- done, -1 when another run holds the lock.
--
-- The fence and idempotence are as in lock_obtain.lua.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(now / tonumber(ARGV[3]))
if redis.call('GET', KEYS[3]) == string.format('%d', window) then
  return {0, window}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return {tonumber(redis.call('GET', KEYS[2]) or '0'), window}
end
if holder then
  return {-1, window}
end
local prev = redis.call('GET', KEYS[2])
local n = 0
if prev then
  n = tonumber(prev)
  if not n or n ~= math.floor(n) or n < 0 then
    return redis.error_reply('ERR fence counter ' .. KEYS[2] .. ' holds ' .. string.format('%q', prev) .. ', not a fence')
  end
end
n = math.max(n + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[2], string.format('%.0f', n), 'PX', ARGV[4])
else
  redis.call('SET', KEYS[2], string.format('%.0f', n))
end
return {n, window}
