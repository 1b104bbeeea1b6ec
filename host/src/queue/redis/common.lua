-- Shared by every script; appended after the key prelude (keys.rs).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function band_of(priority)
  if priority >= 7 then return 'h' elseif priority >= 4 then return 'n' else return 'l' end
end

-- Creating the consumer groups once per queue: XGROUP CREATE fails if the group exists.
-- Remembered for the script's run: a batch of one queue's tasks asks Redis once.
local ENSURED = {}
local function ensure_queue(queue)
  if ENSURED[queue] then return end
  ENSURED[queue] = true
  if redis.call('SADD', QUEUES, queue) == 1 then
    for _, band in ipairs(BANDS) do
      pcall(redis.call, 'XGROUP', 'CREATE', stream_key(queue, band), GROUP, '0', 'MKSTREAM')
    end
  end
end

-- Tasks made ready by this script, by queue: flush_signals() wakes their workers.
local SIGNALS = {}

-- Makes a task ready; flush_signals() (which every script that calls this runs before
-- it returns) then wakes one idle worker of its queue per task.
local function push_ready(id, queue, priority)
  ensure_queue(queue)
  redis.call('XADD', stream_key(queue, band_of(priority)), '*', 'id', id)
  SIGNALS[queue] = (SIGNALS[queue] or 0) + 1
end

-- One wake-up token per task made ready, in one push per queue. The token list is
-- capped: tokens are hints, a worker that wakes for nothing goes back to waiting.
local function flush_signals()
  for queue, count in pairs(SIGNALS) do
    local tokens = {}
    for i = 1, math.min(count, 64) do tokens[i] = '1' end
    redis.call('RPUSH', signal_key(queue), unpack(tokens))
    redis.call('LTRIM', signal_key(queue), -64, -1)
  end
  SIGNALS = {}
end

-- The history list keeps only what the task hash cannot tell. The hash holds the current
-- attempt's start (attempts, started_at, worker) and the task's outcome; readers derive
-- that attempt's 'started' event and the 'succeeded' or 'failed' that ends it from the
-- hash (record_from_hash in mod.rs). So a task that runs once and ends writes no history
-- at all: two list pushes and two JSON encodings fewer per task. The 'hist' field says
-- whether the list exists ('0' no, '1' yes), so that reading and expiring a record touch
-- it only then; a record enqueued before the field existed has none, and may have a list.
local function history(id, at, event, attempt, worker, detail)
  local entry = {at = at, event = event, attempt = tonumber(attempt) or 0}
  if worker and worker ~= '' then entry.worker = worker end
  if detail and detail ~= '' then entry.detail = detail end
  redis.call('RPUSH', history_key(id), cjson.encode(entry))
  redis.call('HSET', task_key(id), 'hist', '1')
end

-- An attempt that ends without ending the task (retry, lost worker, release, revoke
-- while running): its start goes into the list before the next attempt overwrites it.
local function close_attempt(id)
  local f = redis.call('HMGET', task_key(id), 'attempts', 'started_at', 'worker')
  if f[2] then history(id, tonumber(f[2]), 'started', f[1], f[3], nil) end
end

-- hist: the 'hist' field as the caller read it (false when absent); nil means look.
local function expire_record(id, ttl, hist)
  redis.call('PEXPIRE', task_key(id), ttl)
  if hist == nil then hist = redis.call('HGET', task_key(id), 'hist') end
  if hist ~= '0' then redis.call('PEXPIRE', history_key(id), ttl) end
end

local function dead_letter(id, queue, now, attempt, worker, reason)
  redis.call('HSET', task_key(id), 'state', 'FAILURE', 'error', reason, 'finished_at', now, 'dead', '1')
  redis.call('HDEL', task_key(id), 'lease', 'eta')
  redis.call('ZADD', dead_key(queue), now, id)
  history(id, now, 'dead_lettered', attempt, worker, reason)
  redis.call('PERSIST', task_key(id))
  redis.call('PERSIST', history_key(id))
end

-- Enqueues one task; returns the task id and 1, or the id of the task an idempotency key
-- (or the same id) already names and 0.
local function enqueue_task(id, name, queue, args, priority, delay, idem, idem_ttl, now)
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
    return existing, 0
  end
  local tk = task_key(id)
  redis.call('ZADD', RECENT, 0, id)
  redis.call('HSET', tk, 'id', id, 'name', name, 'queue', queue, 'args', args,
    'priority', priority, 'state', 'PENDING', 'enqueued_at', now,
    'attempts', 0, 'retries', 0, 'lost', 0, 'hist', '0')
  if delay > 0 then
    ensure_queue(queue)
    redis.call('HSET', tk, 'eta', now + delay)
    redis.call('ZADD', delayed_key(queue), now + delay, id)
  else
    push_ready(id, queue, priority)
  end
  return id, 1
end

-- The listing index keeps the newest 100,000 ids; older records are still readable by id.
local function trim_recent()
  if redis.call('ZCARD', RECENT) > 101000 then
    redis.call('ZREMRANGEBYRANK', RECENT, 0, -100001)
  end
end
