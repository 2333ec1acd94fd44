-- Admits a batch of requests of one team, one after another, as if each came alone: each against
-- every scope that limits it, or refused, atomically (all its checks first, then all its writes, so
-- a refused request is counted nowhere), and each sees what the ones before it wrote. All KEYS
-- share the team's hash tag, so this also runs on a Redis Cluster.
--
-- The batch's scopes come once each, however many of its admissions they limit (a scope: its keys
-- for one day, and its limits); an admission names its scopes by their place in that list.
-- KEYS, six per scope of the batch, in this order:
--   rpm       zset  sliding one-minute log of admissions (member: request id, score: time)
--   tpm       hash  token bucket: level, ts
--   day       hash  used: tokens settled this UTC day; spent: micro-dollars
--   month     hash  used: tokens settled this UTC month; spent: micro-dollars
--   inflight  zset  leases of requests in flight (member: request id, score: lease expiry)
--   reserved  hash  tokens reserved per request in flight, and their sum in field _sum; the
--                   micro-dollars reserved against budgets in fields $<request id>, summed in $_sum
-- ARGV: the number of admissions, the number of scopes, then per scope seven limits: rpm, tpm,
--       tokens per day, tokens per month, concurrency, micro-dollars per day, per month (-1: none);
--       then per admission: now, request id, tokens to reserve, lease expiry, day end, month end,
--       scope count, the place (from 1) of each of its scopes, then the micro-dollars to reserve
-- Returns per admission, in order: {1, rpm limit, rpm remaining, rpm reset ms, tpm limit,
--      tpm remaining, tpm reset ms, budget limit, budget remaining, budget reset ms} (-1: none) or
--      {0, scope index, kind, limit, used, retry after ms, final (0/1)}
--
-- Writes that no later check in the batch reads from Redis (admissions to the minute window,
-- slots, reservations, token buckets, expiries) are gathered and made once per key at the end; the
-- checks add what is gathered to what they read. Reads are made once per batch and kept up to date
-- by the batch's own writes, and clean-ups that could find nothing are not made: a batch of n costs
-- Redis a few calls, not a few per admission (docs/benchmarks.md).

local MINUTE = 60000
local now, now_s, ab                                          -- this admission's time (number, string), its ARGV offset

-- Numbers go to redis.call as strings made here: a Lua number would be formatted with %.14g, and
-- number conversions were a tenth of Redis's instructions for these scripts (callgrind). So the
-- gateway's own strings are passed on where they serve, and parsed only where arithmetic needs them.
local function int(n) return string.format('%d', n) end

local function place(s)                                       -- the batch's place of this admission's scope s
  return tonumber(ARGV[ab + 7 + s])
end

-- The batch's scopes' limits, each parsed once per batch: tonumber is two strtod calls in Redis's
-- Lua, and number parsing was a tenth of Redis's instructions for these scripts (callgrind).
local LIMITS = 7                                              -- limits per scope
local limits = {}                                             -- place -> its seven limits (false: none)
local function limit(p, i)                                    -- limit i of the batch's scope p, or nil
  local parsed = limits[p]
  if not parsed then
    parsed = {}
    for j = 1, LIMITS do
      local v = ARGV[2 + (p - 1) * LIMITS + j]
      parsed[j] = v ~= '-1' and tonumber(v)                   -- (none: no parsing)
    end
    limits[p] = parsed
  end
  return parsed[i] or nil
end

-- Gathered writes, per key, in the order keys were first seen.
local order = {}                                              -- keys with something gathered
local ttl_set = {}                                            -- key -> ms it is to live from the batch's last write
local slots = {}                                              -- inflight key -> {lease, id, lease, id, …}
local held = {}                                               -- reserved key -> {id, tokens, …}
local held_sum = {}                                           -- reserved key -> tokens gathered
local held_cost = {}                                          -- reserved key -> micro-dollars gathered
local entries = {}                                            -- rpm key -> {time, id, …}: admissions to its window
local entry_oldest = {}                                       -- rpm key -> the oldest time gathered
local buckets = {}                                            -- tpm key -> {level, ts, ts as text}: read once, then kept here
                                                              -- (written at the end if an admission took from it: then it is in `order`)
-- Reads kept for the rest of the batch, and kept up to date by its own writes (nil: read again).
local window_read = {}                                        -- rpm key -> ZCARD, gathered admissions left out
local oldest_read = {}                                        -- rpm key -> its oldest time in Redis, false: none
local trimmed_at = {}                                         -- rpm key -> the time its window was last trimmed to
local lapse_checked = {}                                      -- inflight key -> the time lapsed leases were last cleared to
local slots_read = {}                                         -- inflight key -> ZCARD, gathered slots left out
local sum_read = {}                                           -- reserved key -> _sum, gathered tokens left out
local used_read = {}                                          -- day or month key -> used (admissions never change it)
local spent_read = {}                                         -- day or month key -> spent (likewise)
local cost_read = {}                                          -- reserved key -> $_sum, gathered micro-dollars left out

local function push(lists, key, a, b)                          -- a pair onto a key's gathered list
  local list = lists[key]
  if not list then
    list = {}
    lists[key] = list
  end
  list[#list + 1] = a
  list[#list + 1] = b
end

local function gathered(lists, key)                           -- pairs gathered for a key
  local list = lists[key]
  if list then return #list / 2 end
  return 0
end

-- A key's expiry, from the last write to it. Every writer of a key sets the same span from its own
-- write (slots and reservations: a lease and a minute, here and in lease renewals), so setting it
-- never cuts short what another writer asked for, and it is set without being read first.
local function expire(key, ms)
  if not ttl_set[key] then order[#order + 1] = key end
  if ms > (ttl_set[key] or 0) then ttl_set[key] = ms end
end

-- The minute window (a log of admission times). Trimmed only when an entry may have left it: not
-- again at a time it was trimmed to, nor while its oldest entry is known to be inside.
local function trim(rpm_key)
  if trimmed_at[rpm_key] and now <= trimmed_at[rpm_key] then return end
  local first = oldest_read[rpm_key]
  if first == false or (first and first > now - MINUTE) then return end
  trimmed_at[rpm_key] = now
  local removed = redis.call('ZREMRANGEBYSCORE', rpm_key, '-inf', int(now - MINUTE))
  if removed > 0 then
    oldest_read[rpm_key] = nil
    if window_read[rpm_key] then window_read[rpm_key] = window_read[rpm_key] - removed end
  end
end

local function window(rpm_key)                                -- admissions in the window, gathered ones too
  if not window_read[rpm_key] then
    window_read[rpm_key] = redis.call('ZCARD', rpm_key)
    if window_read[rpm_key] == 0 then oldest_read[rpm_key] = false end
  end
  return window_read[rpm_key] + gathered(entries, rpm_key)
end

local function oldest(rpm_key)                                -- the window's oldest admission time, or nil
  if oldest_read[rpm_key] == nil then
    local score = redis.call('ZRANGE', rpm_key, '0', '0', 'WITHSCORES')[2]
    oldest_read[rpm_key] = score and tonumber(score) or false
  end
  local first, gathered = oldest_read[rpm_key], entry_oldest[rpm_key]
  if not first or (gathered and gathered < first) then return gathered end
  return first
end

local function bucket(key, cap)                               -- token bucket level, refilled to now
  local state = buckets[key]
  if not state then
    local read = redis.call('HMGET', key, 'level', 'ts')
    if not read[1] then return cap end                        -- never used: full
    state = {tonumber(read[1]), tonumber(read[2]), read[2]}
    buckets[key] = state
  end
  local level = state[1] + (now - state[2]) * cap / MINUTE
  if level > cap then level = cap end
  return level
end

local function admit()
  local id = ARGV[ab + 2]
  local tokens = tonumber(ARGV[ab + 3])
  local lease_until = tonumber(ARGV[ab + 4])
  local scopes = tonumber(ARGV[ab + 7])
  local cost_s = ARGV[ab + 8 + scopes]
  local cost = tonumber(cost_s)

  -- Phase 1: checks. The only writes are clean-ups that change no answer (expired entries).
  local levels = {}                                           -- per scope: its token bucket's level, refilled to now
  local period_state = {-1, -1, -1}                           -- the tightest day or month quota: limit, left, reset ms
  local budget_state = {-1, -1, -1}                           -- the tightest budget: limit, left, reset ms
  for s = 1, scopes do
    local p = place(s)
    local k = (p - 1) * 6
    local rpm_key, tpm_key, day_key, month_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
    local inflight_key, reserved_key = KEYS[k + 5], KEYS[k + 6]

    -- Leases of instances that died expire: give their reservations back. (Not again at a time
    -- already cleared to: the batch's own slots, gathered, lapse long after it.)
    if not (lapse_checked[inflight_key] and now <= lapse_checked[inflight_key]) then
      lapse_checked[inflight_key] = now
      for _, gone in ipairs(redis.call('ZRANGEBYSCORE', inflight_key, '-inf', now_s)) do
        slots_read[inflight_key] = nil
        sum_read[reserved_key] = nil
        cost_read[reserved_key] = nil
        local amount, cost = unpack(redis.call('HMGET', reserved_key, gone, '$' .. gone))
        if amount then
          redis.call('HINCRBY', reserved_key, '_sum', int(0 - tonumber(amount))) -- (never -0)
          redis.call('HDEL', reserved_key, gone)
        end
        if cost then
          redis.call('HINCRBY', reserved_key, '$_sum', int(0 - tonumber(cost)))
          redis.call('HDEL', reserved_key, '$' .. gone)
        end
        redis.call('ZREM', inflight_key, gone)
      end
    end

    local conc = limit(p, 5)
    if conc then
      slots_read[inflight_key] = slots_read[inflight_key] or redis.call('ZCARD', inflight_key)
      local n = slots_read[inflight_key] + gathered(slots, inflight_key)
      if n + 1 > conc then return {0, s, 'concurrency', conc, n, 1000, 0} end
    end

    local rpm = limit(p, 1)
    if rpm then
      trim(rpm_key)
      local n = window(rpm_key)
      if n + 1 > rpm then
        local first = oldest(rpm_key)
        local retry = 1
        if first then retry = math.max(1, first + MINUTE - now) end
        local final = 0
        if rpm == 0 then final = 1 end
        return {0, s, 'requests', rpm, n, retry, final}
      end
    end

    local tpm = limit(p, 2)
    if tpm then
      local level = bucket(tpm_key, tpm)
      levels[s] = level
      local used = math.ceil(tpm - level)
      if used < 0 then used = 0 end
      if tokens > tpm then return {0, s, 'tokens', tpm, used, 0, 1} end  -- can never fit
      if tokens > level then
        return {0, s, 'tokens', tpm, used, math.ceil((tokens - level) * MINUTE / tpm), 0}
      end
    end

    local reserved = nil                                      -- tokens reserved in flight, read once if needed
    for i = 3, 4 do                                           -- tokens per day, then per month
      local cap = limit(p, i)
      if cap then
        local key = day_key
        if i == 4 then key = month_key end
        if not reserved then
          sum_read[reserved_key] = sum_read[reserved_key] or tonumber(redis.call('HGET', reserved_key, '_sum') or '0')
          reserved = sum_read[reserved_key] + (held_sum[reserved_key] or 0)
        end
        used_read[key] = used_read[key] or tonumber(redis.call('HGET', key, 'used') or '0')
        local used = used_read[key]
        local kind = 'tokens_per_day'
        if i == 4 then kind = 'tokens_per_month' end
        if used + tokens > cap then                               -- spent until the period ends
          return {0, s, kind, cap, used, tonumber(ARGV[ab + 2 + i]) - now, 1}
        end
        if used + reserved + tokens > cap then                    -- fits once requests in flight settle
          return {0, s, kind, cap, used + reserved, 1000, 0}
        end
        local left = cap - used - reserved - tokens               -- what is left once this one is in
        if period_state[1] < 0 or left < period_state[2] then
          period_state = {cap, left, tonumber(ARGV[ab + 2 + i]) - now}
        end
      end
    end

    local reserved_cost = nil                                 -- micro-dollars reserved in flight, read once if needed
    for i = 6, 7 do                                           -- budgets: micro-dollars per day, then per month
      local cap = limit(p, i)
      if cap then
        local key, kind, ends = day_key, 'usd_per_day', ARGV[ab + 5]
        if i == 7 then key, kind, ends = month_key, 'usd_per_month', ARGV[ab + 6] end
        if not reserved_cost then
          cost_read[reserved_key] = cost_read[reserved_key] or tonumber(redis.call('HGET', reserved_key, '$_sum') or '0')
          reserved_cost = cost_read[reserved_key] + (held_cost[reserved_key] or 0)
        end
        spent_read[key] = spent_read[key] or tonumber(redis.call('HGET', key, 'spent') or '0')
        local spent = spent_read[key]
        if spent + cost > cap then                                -- spent until the period ends
          return {0, s, kind, cap, spent, tonumber(ends) - now, 1}
        end
        if spent + reserved_cost + cost > cap then                -- fits once requests in flight settle
          return {0, s, kind, cap, spent + reserved_cost, 1000, 0}
        end
        local left = cap - spent - reserved_cost - cost           -- what is left once this one is in
        if budget_state[1] < 0 or left < budget_state[2] then budget_state = {cap, left, tonumber(ends) - now} end
      end
    end
  end

  -- Phase 2: every scope admits it. Count it everywhere and report the tightest minute windows.
  local rpm_state = {-1, -1, -1}
  local tpm_state = {-1, -1, -1}
  for s = 1, scopes do
    local p = place(s)
    local k = (p - 1) * 6
    local rpm_key, tpm_key, inflight_key, reserved_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 5], KEYS[k + 6]

    expire(inflight_key, lease_until - now + MINUTE)              -- a concurrency slot, as a lease
    push(slots, inflight_key, ARGV[ab + 4], id)                   -- (lease_until, as sent)
    expire(reserved_key, lease_until - now + MINUTE)              -- its reservation
    push(held, reserved_key, id, ARGV[ab + 3])                    -- (tokens, as sent)
    held_sum[reserved_key] = (held_sum[reserved_key] or 0) + tokens
    if cost > 0 then                                              -- what it may cost, against budgets
      push(held, reserved_key, '$' .. id, cost_s)
      held_cost[reserved_key] = (held_cost[reserved_key] or 0) + cost
    end

    local rpm = limit(p, 1)
    if rpm then
      -- Counted in the window (request ids are new per admission, so each adds one entry).
      local n = window(rpm_key) + 1
      expire(rpm_key, MINUTE)
      push(entries, rpm_key, now_s, id)
      if not entry_oldest[rpm_key] or now < entry_oldest[rpm_key] then entry_oldest[rpm_key] = now end
      if n == 1 then oldest_read[rpm_key] = false end             -- (alone in the window: nothing in Redis)
      local remaining = rpm - n
      if rpm_state[1] < 0 or remaining < rpm_state[2] then
        rpm_state = {rpm, remaining, oldest(rpm_key) + MINUTE - now}
      end
    end

    local tpm = limit(p, 2)
    if tpm then
      local level = levels[s] - tokens                           -- (refilled in phase 1; nothing took from it since)
      expire(tpm_key, 2 * MINUTE)
      -- Kept as Redis will hold it (its text, 14 digits): the batch's next admission then sees the
      -- level an admission sent alone would read back, to the last digit.
      buckets[tpm_key] = {tonumber(tostring(level)), now, now_s}
      local remaining = math.floor(level)
      if remaining < 0 then remaining = 0 end
      if tpm_state[1] < 0 or remaining < tpm_state[2] then
        tpm_state = {tpm, remaining, math.ceil((tpm - level) * MINUTE / tpm)}
      end
    end
  end
  -- The token headers describe the tightest token window: the minute's bucket, or a day or month.
  if period_state[1] >= 0 and (tpm_state[1] < 0 or period_state[2] < tpm_state[2]) then tpm_state = period_state end
  return {1, rpm_state[1], rpm_state[2], rpm_state[3], tpm_state[1], tpm_state[2], tpm_state[3],
    budget_state[1], budget_state[2], budget_state[3]}
end

local results = {}
ab = 2 + tonumber(ARGV[2]) * LIMITS
for n = 1, tonumber(ARGV[1]) do
  now_s = ARGV[ab + 1]
  now = tonumber(now_s)
  results[n] = admit()
  ab = ab + 8 + tonumber(ARGV[ab + 7])
end

-- The gathered writes, once per key.
for _, key in ipairs(order) do
  if entries[key] then redis.call('ZADD', key, unpack(entries[key])) end
  if buckets[key] then
    local state = buckets[key]
    redis.call('HSET', key, 'level', tostring(state[1]), 'ts', state[3])
  end
  if slots[key] then redis.call('ZADD', key, unpack(slots[key])) end
  if held[key] then
    redis.call('HSET', key, unpack(held[key]))
    redis.call('HINCRBY', key, '_sum', int(held_sum[key]))
    if held_cost[key] then redis.call('HINCRBY', key, '$_sum', int(held_cost[key])) end
  end
  redis.call('PEXPIRE', key, int(ttl_set[key]))
end
return results
