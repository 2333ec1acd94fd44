-- Creates a team unless its id is taken. Atomic: both writes or neither.
-- KEYS[1]  the team's hash
-- KEYS[2]  the set of all team ids
-- ARGV[1]  the team id
-- ARGV[2…] field, value pairs of the team
if redis.call('EXISTS', KEYS[1]) == 1 then  -- the id is taken:
  return 0                                  --   change nothing
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2)) -- the team's fields
redis.call('SADD', KEYS[2], ARGV[1])         -- and its place in the list
return 1
