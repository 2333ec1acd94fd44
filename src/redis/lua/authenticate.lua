-- Authentication in one round trip: the active key with this hash, and its team.
-- KEYS[1]  the lookup by hash
-- ARGV[1]  the directory prefix (same hash tag as KEYS[1])
local key = redis.call('HGETALL', KEYS[1])                       -- the key, while active
if #key == 0 then                                                -- unknown or revoked:
  return false                                                   --   nothing
end
local team_id
for i = 1, #key, 2 do                                            -- find its team id
  if key[i] == 'team' then team_id = key[i + 1] end
end
local team = redis.call('HGETALL', ARGV[1] .. 'team:' .. team_id) -- and the team, limits and all
return {key, team}
