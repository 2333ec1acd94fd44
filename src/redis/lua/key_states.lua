-- Where each upstream key stands, read only (for /metrics), by the same rules as pick_key.lua.
-- KEYS[1]   hash: key fingerprint -> cooling down until (ms)
-- KEYS[2]   hash: key fingerprint -> refused (taken out of rotation)
-- KEYS[2+i] zset: sliding one-minute log of key i's requests
-- ARGV: now, then per key: fingerprint, budget (-1: none)
-- Returns one code per key: 0 refused, 1 cooling down, 2 at its budget, 3 available

local now = tonumber(ARGV[1])
local MINUTE = 60000
local codes = {}
for i = 1, #KEYS - 2 do
  local fp = ARGV[i * 2]
  local budget = tonumber(ARGV[i * 2 + 1])
  local code = 3
  if redis.call('HGET', KEYS[2], fp) then
    code = 0
  elseif tonumber(redis.call('HGET', KEYS[1], fp) or '0') > now then
    code = 1
  elseif budget >= 0 and redis.call('ZCOUNT', KEYS[2 + i], '(' .. (now - MINUTE), '+inf') >= budget then
    code = 2
  end
  codes[i] = code
end
return codes
