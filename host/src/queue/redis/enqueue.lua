-- ARGV: prefix, idempotency ttl (ms), then 7 per task:
--   id, name, queue, args, priority, delay (ms), idempotency key ('' for none)
-- Returns id, created (1/0) per task.
local idem_ttl = tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 3, #ARGV, 7 do
  local id, name, queue, args = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local priority, delay, idem = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), ARGV[i + 6]
  local existing = false
  if idem ~= '' then
    existing = redis.call('GET', idempotency_key(idem))
    if not existing then
      redis.call('SET', idempotency_key(idem), id, 'PX', idem_ttl)
    end
  end
  if not existing and redis.call('EXISTS', task_key(id)) == 1 then
    -- The same id again (a client retrying after a timeout): never reset a task.
    existing = id
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local tk = task_key(id)
    redis.call('ZADD', RECENT, 0, id)
    redis.call('HSET', tk, 'id', id, 'name', name, 'queue', queue, 'args', args,
      'priority', priority, 'state', 'PENDING', 'enqueued_at', now,
      'attempts', 0, 'retries', 0, 'lost', 0)
    if delay > 0 then
      ensure_queue(queue)
      redis.call('HSET', tk, 'eta', now + delay)
      redis.call('ZADD', delayed_key(queue), now + delay, id)
    else
      push_ready(id, queue, priority)
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
-- The listing index keeps the newest 100,000 ids; older records are still readable by id.
if redis.call('ZCARD', RECENT) > 101000 then
  redis.call('ZREMRANGEBYRANK', RECENT, 0, -100001)
end
return out
