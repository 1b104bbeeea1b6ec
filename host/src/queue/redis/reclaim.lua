-- Puts back the tasks whose lease expired: their worker stopped renewing it (died, or
-- lost Redis for longer than the lease). ARGV: prefix, lease (ms), max lost deliveries,
-- result ttl (ms).
-- Returns {requeued ids, dead-lettered ids}.
local lease = tonumber(ARGV[2])
local max_lost = tonumber(ARGV[3])
local now = now_ms()
local requeued, dead = {}, {}
for _, q in ipairs(redis.call('SMEMBERS', QUEUES)) do
  for _, band in ipairs(BANDS) do
    local sk = stream_key(q, band)
    local cursor = '0-0'
    -- XAUTOCLAIM scans at most COUNT*10 entries a call: follow the cursor, boundedly.
    for _ = 1, 10 do
      local ok, res = pcall(redis.call, 'XAUTOCLAIM', sk, GROUP, 'reclaimer', lease, cursor, 'COUNT', 100)
      if not ok then break end
      cursor = res[1]
      for _, entry in ipairs(res[2]) do
        if entry and entry[2] then
          local eid, id = entry[1], entry[2][2]
          local tk = task_key(id)
          local f = redis.call('HMGET', tk, 'lease', 'worker', 'attempts', 'priority', 'revoke')
          redis.call('XACK', sk, GROUP, eid)
          redis.call('XDEL', sk, eid)
          if f[1] == eid then
            redis.call('HDEL', tk, 'lease', 'revoke')
            local lost = redis.call('HINCRBY', tk, 'lost', 1)
            local why = 'lease expired: worker ' .. (f[2] or '?') .. ' gave no sign of life for ' .. lease .. ' ms'
            close_attempt(id)
            history(id, now, 'lease_expired', f[3], f[2], why)
            if f[5] == '1' then
              -- Revoked while it ran: the lost run is not run again.
              redis.call('HSET', tk, 'state', 'REVOKED', 'finished_at', now)
              history(id, now, 'revoked', f[3], f[2], 'revoked while its worker was lost')
              expire_record(id, tonumber(ARGV[4]))
            elseif lost >= max_lost then
              dead_letter(id, q, now, f[3], f[2], 'lost its worker ' .. lost .. ' times; last: ' .. why)
              dead[#dead + 1] = id
            else
              redis.call('HSET', tk, 'state', 'PENDING')
              push_ready(id, q, tonumber(f[4]))
              requeued[#requeued + 1] = id
            end
          end
        end
      end
      if cursor == '0-0' then break end
    end
  end
end
flush_signals()
return {requeued, dead}
