-- Settles a batch of requests of one team, one after another: each frees its slot, gives back its
-- reservation, counts its real usage in every scope's day and month and in the team's usage
-- report. Atomic; all KEYS share the team's tag.
--
-- As in admit.lua, the batch's scopes (and the team's usage hashes) come once each, and a
-- settlement names them by their place (from 1).
-- KEYS: six per scope of the batch as in admit.lua (rpm, tpm, day, month, inflight, reserved: each
--       settlement gives back its tokens and its $<id> micro-dollars), then
--       the team's usage hashes (per admission day: the day's, then its hourly one, whose fields
--       are led by the hour), then the team's settled set.
-- ARGV: the number of settlements, the number of scopes, the number of usage hashes, then per
--       scope its tokens-per-minute limit (-1: none); then per settlement: now, request id, tokens
--       reserved, tokens used, day key TTL, month key TTL (ms), scope count, the place of each of
--       its scopes, the place of its usage hash, then the usage field prefix (`<key id>\t<model>\t`),
--       prompt, completion, total, estimated (0/1), usage key TTL (ms), cost (micro-dollars), the
--       UTC hour of admission (`HH`), the hourly usage key's TTL (ms); then
--       how long a settlement
--       is remembered (ms), and the request ids of earlier settlements whose replies came. TTLs are
--       relative: the clock is the gateway's.
-- Returns per settlement 1, or 0 for one settled before.
-- Idempotent: a settlement whose reply was lost (Redis died just after running it) may be sent
-- again from the usage buffer; the settled set (member: request id, score: when) makes the second
-- run change nothing. A settlement whose reply came is never sent again, so the gateway names it in
-- its team's next batch and it leaves the set (after this batch's own checks): the set holds the
-- settlements still unanswered, not every request of the last hours. One whose instance stopped
-- before naming it leaves when it is older than the time a settlement is remembered.
--
-- The counters, freed slots, given-back reservations and token buckets, which no later settlement
-- in the batch reads from Redis, are gathered and written once per key and field at the end; a
-- bucket is read once per batch (docs/benchmarks.md).

local MINUTE = 60000
-- Numbers go to redis.call as strings made here (see admit.lua); TTLs pass on as the gateway sent them.
local function int(n) return string.format('%d', n) end
local ab                                                      -- this settlement's ARGV offset
local scope_count, usage_count = tonumber(ARGV[2]), tonumber(ARGV[3])
local settled_key = KEYS[scope_count * 6 + usage_count + 1]

-- Gathered: amounts per key and field (in the order first seen), and slots to free per key.
local sums, sum_order = {}, {}
local freed, freed_order = {}, {}                             -- inflight key -> request ids whose slots are free
local returned, returned_order = {}, {}                       -- reserved key -> request ids whose reservations come back
local buckets, bucket_order = {}, {}                          -- tpm key -> {level, ts as text}, read once

-- Adds to a counter. With a ttl, a key that did not exist gets its expiry at the write (the first
-- add to a new key returns exactly the amount; a later one that does too only sets the same
-- deadline again). Saves a PEXPIRE per counter on every settlement after the first of the period.
-- (Per key, then per field: a string made of the two per call was a visible cost; callgrind.)
local function add(key, field, amount, ttl)
  local fields = sums[key]
  if not fields then
    fields = {}
    sums[key] = fields
  end
  local sum = fields[field]
  if sum then
    sum[3] = sum[3] + amount
  else
    sum = {key, field, amount, ttl}
    fields[field] = sum
    sum_order[#sum_order + 1] = sum
  end
end

-- The usage report's field names of a key and model (`<key id>\t<model>\t`), made once per batch.
local usage_names = {}
local function usage_fields(prefix)
  local names = usage_names[prefix]
  if not names then
    names = {prefix .. 'r', prefix .. 'p', prefix .. 'c', prefix .. 't', prefix .. 'e', prefix .. 'u'}
    usage_names[prefix] = names
  end
  return names
end

local function gather(lists, order, key, id)                  -- a request id into a key's list
  local ids = lists[key]
  if not ids then
    ids = {}
    lists[key] = ids
    order[#order + 1] = key
  end
  ids[#ids + 1] = id
end

local function settle()                                        -- the settlement at ARGV offset ab
  local id = ARGV[ab + 2]
  local used_tokens = tonumber(ARGV[ab + 4])
  local day_ttl, month_ttl = ARGV[ab + 5], ARGV[ab + 6]
  local scopes = tonumber(ARGV[ab + 7])
  local u = ab + 8 + scopes                                   -- the usage report's arguments (its hash's place at u)
  local cost = tonumber(ARGV[u + 7])                          -- micro-dollars

  if redis.call('ZADD', settled_key, 'NX', ARGV[ab + 1], id) == 0 then
    return 0                                                  -- settled before: count nothing twice
  end

  for s = 1, scopes do
    local p = tonumber(ARGV[ab + 7 + s])                      -- the batch's place of the scope
    local k = (p - 1) * 6
    local tpm_key, day_key, month_key = KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
    local inflight_key, reserved_key = KEYS[k + 5], KEYS[k + 6]

    gather(returned, returned_order, reserved_key, id)        -- the reservation comes back (at the end)
    gather(freed, freed_order, inflight_key, id)              -- the concurrency slot is free

    add(day_key, 'used', used_tokens, day_ttl)                -- real usage in the periods
    add(month_key, 'used', used_tokens, month_ttl)
    if cost > 0 then                                          -- and what it cost
      add(day_key, 'spent', cost, day_ttl)
      add(month_key, 'spent', cost, month_ttl)
    end

    if ARGV[3 + p] ~= '-1' then                               -- the bucket gets back what was not used
      local tpm = tonumber(ARGV[3 + p])
      local now = tonumber(ARGV[ab + 1])
      local state = buckets[tpm_key]
      if not state then
        local read = redis.call('HMGET', tpm_key, 'level', 'ts')
        state = {}
        if read[1] then state = {tonumber(read[1]), read[2]} end
        buckets[tpm_key] = state
        bucket_order[#bucket_order + 1] = tpm_key
      end
      local level = tpm
      if state[1] then
        level = state[1] + (now - tonumber(state[2])) * tpm / MINUTE
      end
      level = level + tonumber(ARGV[ab + 3]) - used_tokens   -- (what was reserved, less what was used)
      if level > tpm then level = tpm end
      state[1], state[2] = tonumber(tostring(level)), ARGV[ab + 1] -- as Redis will hold it (admit.lua)
    end
  end

  local usage_key = KEYS[scope_count * 6 + tonumber(ARGV[u])] -- the usage report's counters
  local names = usage_fields(ARGV[u + 1])
  add(usage_key, names[1], 1, ARGV[u + 6])
  add(usage_key, names[2], tonumber(ARGV[u + 2]))
  add(usage_key, names[3], tonumber(ARGV[u + 3]))
  add(usage_key, names[4], tonumber(ARGV[u + 4]))
  if ARGV[u + 5] ~= '0' then add(usage_key, names[5], tonumber(ARGV[u + 5])) end -- (absent reads as 0)
  if ARGV[u + 7] ~= '0' then add(usage_key, names[6], tonumber(ARGV[u + 7])) end

  local hour_key = KEYS[scope_count * 6 + tonumber(ARGV[u]) + 1] -- the same counters for the hour
  names = usage_fields(ARGV[u + 8] .. '\t' .. ARGV[u + 1])
  add(hour_key, names[1], 1, ARGV[u + 9])
  add(hour_key, names[2], tonumber(ARGV[u + 2]))
  add(hour_key, names[3], tonumber(ARGV[u + 3]))
  add(hour_key, names[4], tonumber(ARGV[u + 4]))
  if ARGV[u + 5] ~= '0' then add(hour_key, names[5], tonumber(ARGV[u + 5])) end
  if ARGV[u + 7] ~= '0' then add(hour_key, names[6], tonumber(ARGV[u + 7])) end
  return 1
end

local results = {}
ab = 3 + scope_count
local last_now = 0
for n = 1, tonumber(ARGV[1]) do
  results[n] = settle()
  last_now = tonumber(ARGV[ab + 1])
  ab = ab + 8 + tonumber(ARGV[ab + 7]) + 9
end

-- The gathered writes. Reservations first: each one still held (its lease did not lapse, and it
-- was not given back before) leaves the sum.
for _, key in ipairs(returned_order) do
  local ids = returned[key]
  local fields = {}                                            -- each id, then each id's $<id> (its micro-dollars)
  for i = 1, #ids do
    fields[i] = ids[i]
    fields[#ids + i] = '$' .. ids[i]
  end
  local amounts = redis.call('HMGET', key, unpack(fields))
  local held, total, cost = {}, 0, 0
  for i = 1, #fields do
    if amounts[i] then
      held[#held + 1] = fields[i]
      if i <= #ids then total = total + tonumber(amounts[i]) else cost = cost + tonumber(amounts[i]) end
    end
  end
  if #held > 0 then
    redis.call('HDEL', key, unpack(held))
    if total ~= 0 then redis.call('HINCRBY', key, '_sum', int(0 - total)) end -- (never -0)
    if cost ~= 0 then redis.call('HINCRBY', key, '$_sum', int(0 - cost)) end
  end
end
for _, key in ipairs(bucket_order) do
  local state = buckets[key]
  redis.call('HSET', key, 'level', tostring(state[1]), 'ts', state[2])
  redis.call('PEXPIRE', key, int(2 * MINUTE))
end
for _, key in ipairs(freed_order) do redis.call('ZREM', key, unpack(freed[key])) end
for _, sum in ipairs(sum_order) do                             -- {key, field, amount, ttl}
  local value = redis.call('HINCRBY', sum[1], sum[2], int(sum[3]))
  if sum[4] and value == sum[3] then redis.call('PEXPIRE', sum[1], sum[4]) end
end
-- The settled set: answered settlements leave, and so do unanswered ones older than it remembers.
local remember = ARGV[ab + 1]
if #ARGV > ab + 1 then redis.call('ZREM', settled_key, unpack(ARGV, ab + 2, #ARGV)) end
redis.call('ZREMRANGEBYSCORE', settled_key, '-inf', int(last_now - tonumber(remember)))
redis.call('PEXPIRE', settled_key, remember)
return results
