-- A scheduler tick: enqueues the task only if this schedule has not fired this tick (or
-- a later one) yet, so that any number of schedulers fire each tick once.
-- ARGV: prefix, idempotency ttl (ms), schedule id, tick (ms), then the task's 7 fields
-- as in enqueue.lua. Returns the task id, or false when the tick was already fired.
local schedule, tick = ARGV[3], tonumber(ARGV[4])
local last = redis.call('HGET', BEAT, schedule)
if last then
  local fired = tonumber(string.match(last, '^(-?%d+)'))
  if fired and fired >= tick then return false end
end
local now = now_ms()
local id = enqueue_task(ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]),
  ARGV[11], tonumber(ARGV[2]), now)
redis.call('HSET', BEAT, schedule, tick .. ':' .. id)
trim_recent()
flush_signals()
return id
