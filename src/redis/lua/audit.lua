-- Appends a batch of audit entries to the capped audit stream: one round trip for many requests.
--
-- KEYS: the audit stream.
-- ARGV: approximate cap (XADD MAXLEN ~), fields per entry (names and values: 2 per field), then
--       the entries one after another, each as name, value, name, value, …
local stream = KEYS[1]
local cap = ARGV[1]
local width = tonumber(ARGV[2])
local written = 0
for start = 3, #ARGV, width do
  redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', unpack(ARGV, start, start + width - 1))
  written = written + 1
end
return written
