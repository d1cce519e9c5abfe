-- RunOnce start: KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] done marker
-- (one hash slot); ARGV[1] lease value, ARGV[2] ttl ms, ARGV[3] interval ms,
-- ARGV[4] fence retention ms.
-- The window is numbered on the Redis server's clock, so every host agrees
-- on it. Returns {fence, window}: fence is 0 when this window is already
-- done, -1 when another run holds the lock (the lock is taken as in take).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = math.floor(now / tonumber(ARGV[3]))
if redis.call('GET', KEYS[3]) == string.format('%d', window) then
  return {0, window}
end
local fence = take(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[4])
if type(fence) == 'table' then
  return fence
end
if fence == 0 then
  return {-1, window}
end
return {fence, window}
