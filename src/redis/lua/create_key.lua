-- Stores a new client key, only while its team exists. Atomic: all three writes or none.
-- KEYS[1]  the team's hash
-- KEYS[2]  the key's record (by id)
-- KEYS[3]  the lookup by hash (what authentication reads: one HGETALL)
-- KEYS[4]  the set of the team's key ids
-- ARGV[1]  the key id
-- ARGV[2…] field, value pairs of the key
if redis.call('EXISTS', KEYS[1]) == 0 then   -- the team is gone:
  return 0                                   --   store nothing
end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))  -- the record
redis.call('HSET', KEYS[3], unpack(ARGV, 2))  -- the same fields under its hash
redis.call('SADD', KEYS[4], ARGV[1])          -- listed with its team
return 1
