-- Records when keys were last used, in one batch; never recreates a key that is gone.
-- KEYS[i]  a key's record
-- ARGV[i]  when it was last used (ISO 8601)
for i, record in ipairs(KEYS) do
  if redis.call('EXISTS', record) == 1 then            -- deleted keys stay deleted
    redis.call('HSET', record, 'last_used_at', ARGV[i])
  end
end
return 1
