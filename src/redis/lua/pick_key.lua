-- Picks the upstream key with the most room in its requests-per-minute budget and counts the
-- request against it, atomically, so no instance sends a key past its budget. Keys cooling down
-- after a 429, and keys the upstream refused, are skipped.
-- KEYS[1]   hash: key fingerprint -> cooling down until (ms)
-- KEYS[2]   hash: key fingerprint -> refused (taken out of rotation)
-- KEYS[2+i] zset: sliding one-minute log of key i's requests
-- ARGV: now, request id, key count, rotation offset, then per key: fingerprint, budget (-1: none)
-- Returns {1, index} or {0, ms until some key has room (-1: no usable key at all)}

local now = tonumber(ARGV[1])
local id = ARGV[2]
local n = tonumber(ARGV[3])
local offset = tonumber(ARGV[4])
local MINUTE = 60000

local best, best_room = nil, nil
local wait = nil
for j = 0, n - 1 do
  local i = (j + offset) % n + 1                          -- start at a rotating key: ties spread
  local fp = ARGV[3 + i * 2]
  local budget = tonumber(ARGV[4 + i * 2])
  local log = KEYS[2 + i]
  if not redis.call('HGET', KEYS[2], fp) then           -- refused keys are out
    local cool = tonumber(redis.call('HGET', KEYS[1], fp) or '0')
    if cool > now then                                   -- cooling down: note when it is back
      if not wait or cool - now < wait then wait = cool - now end
    else
      local room = math.huge
      if budget >= 0 then
        redis.call('ZREMRANGEBYSCORE', log, '-inf', now - MINUTE)
        room = budget - redis.call('ZCARD', log)
        if room <= 0 then                                -- at budget: back when its oldest leaves
          local oldest = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2]
          local back = MINUTE
          if oldest then back = tonumber(oldest) + MINUTE - now end
          if not wait or back < wait then wait = back end
        end
      end
      if room > 0 and (not best_room or room > best_room) then
        best, best_room = i, room
      end
    end
  end
end

if not best then
  if not wait then return {0, -1} end
  return {0, math.max(1, math.ceil(wait))}
end
if tonumber(ARGV[4 + best * 2]) >= 0 then                -- count it against the chosen key
  redis.call('ZADD', KEYS[2 + best], now, id)
  redis.call('PEXPIRE', KEYS[2 + best], MINUTE)
end
return {1, best - 1}
