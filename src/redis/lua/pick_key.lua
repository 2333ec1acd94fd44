-- Picks, for each request of a batch in turn, the upstream key with the most room in its
-- requests-per-minute budget and counts the request against it, atomically, so no instance sends a
-- key past its budget. Keys cooling down after a 429, and keys the upstream refused, are skipped.
-- Each pick sees the picks before it in the batch, exactly as if it had come alone.
-- KEYS[1]   hash: key fingerprint -> cooling down until (ms)
-- KEYS[2]   hash: key fingerprint -> refused (taken out of rotation)
-- KEYS[2+i] zset: sliding one-minute log of key i's requests
-- ARGV: the number of picks, the key count, per key: fingerprint, budget (-1: none); then per
--       pick: now, request id, rotation offset
-- Returns per pick, in order: {1, index} or {0, ms until some key has room (-1: no usable key at all)}

local picks = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local MINUTE = 60000

-- Cooldowns and refusals change only outside this script: read once per batch.
local refused, cool = {}, {}
for i = 1, n do
  local fp = ARGV[1 + i * 2]
  refused[i] = redis.call('HGET', KEYS[2], fp) ~= false
  cool[i] = tonumber(redis.call('HGET', KEYS[1], fp) or '0')
end

local function pick(now, id, offset)
  local best, best_room = nil, nil
  local wait = nil
  for j = 0, n - 1 do
    local i = (j + offset) % n + 1                        -- start at a rotating key: ties spread
    local budget = tonumber(ARGV[2 + i * 2])
    local log = KEYS[2 + i]
    if not refused[i] then                               -- refused keys are out
      if cool[i] > now then                              -- cooling down: note when it is back
        if not wait or cool[i] - now < wait then wait = cool[i] - now end
      else
        local room = math.huge
        if budget >= 0 then
          redis.call('ZREMRANGEBYSCORE', log, '-inf', now - MINUTE)
          room = budget - redis.call('ZCARD', log)
          if room <= 0 then                              -- at budget: back when its oldest leaves
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
  if tonumber(ARGV[2 + best * 2]) >= 0 then              -- count it against the chosen key
    redis.call('ZADD', KEYS[2 + best], now, id)
    redis.call('PEXPIRE', KEYS[2 + best], MINUTE)
  end
  return {1, best - 1}
end

local results = {}
local at = 2 + n * 2
for p = 1, picks do
  results[p] = pick(tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3]))
  at = at + 3
end
return results
