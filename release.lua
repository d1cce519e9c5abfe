-- Compare-and-delete: KEYS[1] lock key, ARGV[1] lease value.
-- Returns 1 if the caller held the lease and it was deleted, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
