-- Revokes a key: its lookup goes, so the next request with it fails on every instance.
-- KEYS[1]  the key's record
-- ARGV[1]  the prefix of hash lookups (same hash tag as KEYS[1])
-- ARGV[2]  the time of revocation (ISO 8601)
local hash = redis.call('HGET', KEYS[1], 'hash')
if not hash then                                         -- no such key
  return 0
end
redis.call('DEL', ARGV[1] .. 'keyhash:' .. hash)         -- authentication finds nothing now
if redis.call('HGET', KEYS[1], 'revoked_at') == '' then  -- first revocation keeps its time
  redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2])
end
return 1
