-- One worker round trip: apply completions, promote due delayed tasks, claim new ones.
-- ARGV: prefix, worker, want, result ttl (ms), completion count,
--   6 per completion: id, lease token (stream entry id), stream, kind, payload, extra
--   then the queues to claim from, in order.
-- Returns {applied (1/0 per completion), deliveries, ms until the next delayed task is due
-- or false}.
local worker = ARGV[2]
local want = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local now = now_ms()

local applied = {}
for c = 0, n - 1 do
  local i = 6 + c * 6
  local id, token, stream, kind, payload, extra =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local tk = task_key(id)
  local f = redis.call('HMGET', tk, 'lease', 'attempts', 'queue', 'priority', 'revoke', 'state', 'hist')
  -- Fencing: only the current lease of a running task may complete it. A stale holder
  -- (its lease expired and the task was handed to another worker) or a second report
  -- of the same outcome changes nothing. The lease field outlives the attempt; the
  -- state says whether it is still current.
  if f[1] == token and f[6] == 'STARTED' and f[3] then
    local attempt, queue = f[2], f[3]
    redis.call('XACK', stream, GROUP, token)
    redis.call('XDEL', stream, token)
    if f[5] == '1' then
      redis.call('HDEL', tk, 'revoke')
      -- A revoke asked for while it ran wins over running it again; one asked for
      -- while it waited in the worker that claimed it ahead means it never runs.
      if kind == 'retry' or kind == 'release' then
        kind = 'revoked'
      elseif kind == 'return' then
        kind = 'revoked_unstarted'
      end
    end
    if kind == 'success' then
      redis.call('HSET', tk, 'state', 'SUCCESS', 'result', payload, 'finished_at', now)
      expire_record(id, ttl, f[7])
    elseif kind == 'failure' then
      redis.call('HSET', tk, 'state', 'FAILURE', 'error', payload, 'finished_at', now)
      expire_record(id, ttl, f[7])
    elseif kind == 'retry' then
      local due = now + tonumber(extra)
      close_attempt(id)
      redis.call('HINCRBY', tk, 'retries', 1)
      redis.call('HSET', tk, 'state', 'RETRY', 'error', payload, 'eta', due)
      redis.call('ZADD', delayed_key(queue), due, id)
      history(id, now, 'retry', attempt, worker, payload)
    elseif kind == 'revoked' then
      close_attempt(id)
      redis.call('HSET', tk, 'state', 'REVOKED', 'finished_at', now)
      history(id, now, 'revoked', attempt, worker, 'stopped while running')
      expire_record(id, ttl, true)
    elseif kind == 'revoked_unstarted' then
      redis.call('HSET', tk, 'state', 'REVOKED', 'finished_at', now, 'attempts', tonumber(attempt) - 1)
      redis.call('HDEL', tk, 'worker', 'started_at')
      history(id, now, 'revoked', attempt - 1, worker, 'revoked before it started')
      expire_record(id, ttl, true)
    elseif kind == 'return' then
      -- Claimed ahead and never started: not an attempt, and no 'started' event; back
      -- to its queue now.
      redis.call('HSET', tk, 'state', 'PENDING', 'attempts', tonumber(attempt) - 1)
      redis.call('HDEL', tk, 'worker', 'started_at')
      history(id, now, 'returned', attempt - 1, worker, payload)
      push_ready(id, queue, tonumber(f[4]))
    elseif kind == 'release' then
      -- extra is 'max_lost:delay_ms'; the delay keeps the task from coming straight
      -- back to the worker that could not run it.
      local sep = string.find(extra, ':')
      local max_lost, delay = tonumber(string.sub(extra, 1, sep - 1)), tonumber(string.sub(extra, sep + 1))
      local lost = redis.call('HINCRBY', tk, 'lost', 1)
      close_attempt(id)
      if lost >= max_lost then
        dead_letter(id, queue, now, attempt, worker,
          'delivered ' .. lost .. ' times without running; last time: ' .. payload)
      else
        redis.call('HSET', tk, 'state', 'PENDING', 'eta', now + delay)
        history(id, now, 'released', attempt, worker, payload)
        redis.call('ZADD', delayed_key(queue), now + delay, id)
      end
    end
    applied[#applied + 1] = 1
  else
    applied[#applied + 1] = 0
  end
end

local queues = {}
for i = 6 + n * 6, #ARGV do queues[#queues + 1] = ARGV[i] end

local next_due = false
for _, q in ipairs(queues) do
  local dk = delayed_key(q)
  local due = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, 512)
  for _, id in ipairs(due) do
    redis.call('ZREM', dk, id)
    local f = redis.call('HMGET', task_key(id), 'state', 'priority')
    if f[1] == 'PENDING' or f[1] == 'RETRY' then
      push_ready(id, q, tonumber(f[2]))
    end
  end
  local first = redis.call('ZRANGE', dk, 0, 0, 'WITHSCORES')
  if first[2] then
    local d = tonumber(first[2])
    if not next_due or d - now < next_due then next_due = math.max(d - now, 0) end
  end
end

local delivered = {}
local count = 0
for _, q in ipairs(queues) do
  for _, band in ipairs(BANDS) do
    if count >= want then break end
    local sk = stream_key(q, band)
    local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', GROUP, worker,
      'COUNT', want - count, 'STREAMS', sk, '>')
    if not ok then
      -- NOGROUP: the stream or its group is gone (a flushed or new Redis).
      pcall(redis.call, 'XGROUP', 'CREATE', sk, GROUP, '0', 'MKSTREAM')
      redis.call('SADD', QUEUES, q)
    elseif res then
      for _, entry in ipairs(res[1][2]) do
        local eid, id = entry[1], entry[2][2]
        local tk = task_key(id)
        local f = redis.call('HMGET', tk, 'state', 'name', 'args', 'retries', 'lost', 'enqueued_at', 'eta', 'attempts')
        local state = f[1]
        if (state == 'PENDING' or state == 'RETRY') and f[2] then
          -- No history entry: the hash says when this attempt started and where.
          local attempt = (tonumber(f[8]) or 0) + 1
          redis.call('HSET', tk, 'state', 'STARTED', 'lease', eid, 'worker', worker,
            'started_at', now, 'attempts', attempt)
          if f[7] then redis.call('HDEL', tk, 'eta') end
          delivered[#delivered + 1] = {eid, sk, id, f[2], q, f[3], attempt, f[4], f[5], f[6]}
          count = count + 1
        else
          -- Revoked while waiting, or a record that expired: drop the entry.
          redis.call('XACK', sk, GROUP, eid)
          redis.call('XDEL', sk, eid)
        end
      end
    end
  end
end

flush_signals()
return {applied, delivered, next_due}
