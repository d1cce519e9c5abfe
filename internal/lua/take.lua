-- take(lock, counter, value, ttl, retention): the Locker's acquisition, shared
-- by lock_obtain.lua and lock_runonce.lua (prepended to each).
-- lock, counter: the lock key and its fence counter (one hash slot);
-- value: the lease value; ttl: the lease in ms; retention: the counter's PX
-- in ms (0: it never expires).
-- Returns the fence when the lock is taken, 0 when another holder has it, or
-- an error reply when the counter is not a fence (no lease is left behind).
--
-- The fence is max(counter + 1, server time in microseconds): strictly
-- increasing per key while the counter lives, and still increasing after it
-- expired as long as the server's clock does not step back.
-- Idempotent: a request re-sent after its reply was lost finds its own
-- lease and gets its fence again.
local function take(lock, counter, value, ttl, retention)
  local holder = redis.call('GET', lock)
  if holder == value then
    return tonumber(redis.call('GET', counter) or '0')
  end
  if holder then
    return 0
  end
  local prev = redis.call('GET', counter)
  local n = 0
  if prev then
    n = tonumber(prev)
    if not n or n ~= math.floor(n) or n < 0 then
      return redis.error_reply('ERR fence counter ' .. counter .. ' holds ' .. string.format('%q', prev) .. ', not a fence')
    end
  end
  local t = redis.call('TIME')
  n = math.max(n + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', lock, value, 'PX', ttl)
  if tonumber(retention) > 0 then
    redis.call('SET', counter, string.format('%.0f', n), 'PX', retention)
  else
    redis.call('SET', counter, string.format('%.0f', n))
  end
  return n
end

