-- Set or Delete: write (or delete) the value, drop any rebuild lease so that a
-- rebuild already in flight cannot write its older value afterwards, and tell
-- every node to evict its local copy.
-- KEYS[1] value key, KEYS[2] lock key (same hash slot)
-- ARGV[1] entry bytes ('' deletes), ARGV[2] value PX in ms,
-- ARGV[3] channel, ARGV[4] message.
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
