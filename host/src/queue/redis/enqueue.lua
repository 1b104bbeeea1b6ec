-- ARGV: prefix, idempotency ttl (ms), then 7 per task:
--   id, name, queue, args, priority, delay (ms), idempotency key ('' for none)
-- Returns id, created (1/0) per task.
local idem_ttl = tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 3, #ARGV, 7 do
  local id, created = enqueue_task(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), ARGV[i + 6], idem_ttl, now)
  out[#out + 1] = id
  out[#out + 1] = created
end
trim_recent()
flush_signals()
return out
