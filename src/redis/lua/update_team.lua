-- Updates fields of an existing team; never brings a deleted team back half-made.
-- KEYS[1]  the team's hash
-- ARGV     field, value pairs to set
if redis.call('EXISTS', KEYS[1]) == 0 then  -- no such team (or deleted meanwhile):
  return 0                                  --   write nothing
end
redis.call('HSET', KEYS[1], unpack(ARGV))    -- set the given fields
return 1
