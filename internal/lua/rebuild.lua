-- The rebuild lease of one cache key, as functions that lock.lua and
-- fill.lua run for one key and lock_many.lua and fill_many.lua for many
-- (prepended to each). vkey and lkey are a key's value and lock keys (one
-- hash slot).

-- lock_one reads the value, or takes the rebuild lease when there is none to
-- use. token is the lease value, ttl the lease in ms; known is what the
-- caller saw: '' on a miss (any value is news to it), the write id (entry
-- bytes 4-11) of the entry it wants to refresh, or '*' to go for the lease
-- past an undecodable value.
-- Returns {0, value, pttl} when there is a value the caller has not seen
-- (for a refresh: one written since, so nothing is left to do), {1} when
-- the lease was taken, {2} when another holder has it.
--
-- Idempotent for one lease value: a request re-sent after its reply was
-- lost finds its own lease and is told it won. A value key of another type
-- counts as no value (the fill overwrites it). A lock key that is not a
-- lease of this package, or has no expiry, is given at most the lease ttl
-- to live, so that it cannot block its key for longer.
local function lock_one(vkey, lkey, token, ttl, known)
  local v = redis.pcall('GET', vkey)
  if type(v) ~= 'string' then
    v = nil
  end
  if v and known ~= '*' and (known == '' or string.sub(v, 4, 11) ~= known) then
    return {0, v, redis.call('PTTL', vkey)}
  end
  if redis.call('SET', lkey, token, 'NX', 'PX', ttl) then
    return {1}
  end
  local holder = redis.pcall('GET', lkey)
  if holder == token then
    return {1}
  end
  local left = redis.call('PTTL', lkey)
  local lease = type(holder) == 'string' and string.find(holder, '^%x+|') == 1 and string.sub(holder, 33, 33) == '|'
  if left == -1 or (not lease and left > tonumber(ttl)) then
    redis.call('PEXPIRE', lkey, ttl)
  end
  return {2}
end

-- fill_one is the fenced write-back: it stores entry (unless '') only while
-- the caller still holds the lease (the memcache lease token), then drops
-- the lease and publishes msg on channel to wake waiters. px is the value's
-- PX in ms. Returns 1 when the lease held, 0 when it had been lost.
--
-- Idempotent: a request re-sent after its reply was lost finds its own
-- entry (the same write id, entry bytes 4-11) and reports it stored. A
-- refused write-back still publishes, as kind 'n', so that the sender's
-- message numbers show no gap to the other nodes.
local function fill_one(vkey, lkey, token, entry, px, channel, msg)
  if redis.pcall('GET', lkey) ~= token then
    if entry ~= '' then
      local v = redis.pcall('GET', vkey)
      if type(v) == 'string' and string.sub(v, 4, 11) == string.sub(entry, 4, 11) then
        return 1
      end
    end
    redis.call('PUBLISH', channel, 'n' .. string.sub(msg, 2))
    return 0
  end
  if entry ~= '' then
    redis.call('SET', vkey, entry, 'PX', px)
  end
  redis.call('DEL', lkey)
  redis.call('PUBLISH', channel, msg)
  return 1
end

