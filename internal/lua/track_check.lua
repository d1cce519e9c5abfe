-- Tracking check: read a key from a script, as lock.lua reads value and
-- lease keys, so that New can see that the server tracks reads made by
-- scripts for the connection that runs them.
-- KEYS[1] the check key. No ARGV.
-- Returns the key's value, or false.
return redis.call('GET', KEYS[1])
