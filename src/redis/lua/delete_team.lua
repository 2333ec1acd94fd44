-- Deletes a team and every key of it, so each of its keys fails at once.
-- KEYS[1]  the team's hash
-- KEYS[2]  the set of all team ids
-- KEYS[3]  the set of the team's key ids
-- ARGV[1]  the team id
-- ARGV[2]  the prefix of key records and hash lookups (same hash tag as KEYS)
if redis.call('EXISTS', KEYS[1]) == 0 then                    -- no such team:
  return 0                                                    --   nothing to do
end
for _, kid in ipairs(redis.call('SMEMBERS', KEYS[3])) do      -- for each key of the team
  local record = ARGV[2] .. 'key:' .. kid                     --   its record
  local hash = redis.call('HGET', record, 'hash')             --   the hash clients present
  if hash then
    redis.call('DEL', ARGV[2] .. 'keyhash:' .. hash)          --   the lookup goes: auth fails
  end
  redis.call('DEL', record)                                   --   and the record
end
redis.call('DEL', KEYS[1], KEYS[3])                           -- the team and its key set
redis.call('SREM', KEYS[2], ARGV[1])                          -- and its place in the list
return 1
