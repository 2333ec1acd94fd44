-- Updates a key's name or limits, in its record and, while it is active, in its lookup.
-- KEYS[1]  the key's record
-- ARGV[1]  the directory prefix (same hash tag as KEYS[1])
-- ARGV[2…] field, value pairs to set
local hash = redis.call('HGET', KEYS[1], 'hash')
if not hash then                                              -- no such key
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))                  -- the record
local lookup = ARGV[1] .. 'keyhash:' .. hash
if redis.call('EXISTS', lookup) == 1 then                     -- still active (not revoked):
  redis.call('HSET', lookup, unpack(ARGV, 2))                 --   what authentication reads too
end
return 1
