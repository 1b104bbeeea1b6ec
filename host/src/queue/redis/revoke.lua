-- ARGV: prefix, id, result ttl (ms). Returns {code, state}: 1 revoked (was waiting),
-- 2 requested (running), 3 already finished, 0 unknown.
local id = ARGV[2]
local tk = task_key(id)
local f = redis.call('HMGET', tk, 'state', 'queue', 'attempts')
if not f[1] then return {0, ''} end
if f[1] == 'PENDING' or f[1] == 'RETRY' then
  local now = now_ms()
  redis.call('HSET', tk, 'state', 'REVOKED', 'finished_at', now)
  redis.call('HDEL', tk, 'eta')
  redis.call('ZREM', delayed_key(f[2]), id)
  history(id, now, 'revoked', f[3], nil, 'revoked before it started')
  expire_record(id, tonumber(ARGV[3]))
  return {1, 'REVOKED'}
elseif f[1] == 'STARTED' then
  redis.call('HSET', tk, 'revoke', '1')
  return {2, 'STARTED'}
end
return {3, f[1]}
