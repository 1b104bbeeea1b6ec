-- Renews leases (XCLAIM JUSTID resets the entry's idle time without counting a delivery)
-- and stores progress. ARGV: prefix, worker, then 4 per lease: id, token, stream, progress
-- JSON ('' for none). Returns per lease: 1 held, 2 held and revoke asked, 0 lost.
local worker = ARGV[2]
local out = {}
for i = 3, #ARGV, 4 do
  local id, token, stream, progress = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local tk = task_key(id)
  local f = redis.call('HMGET', tk, 'lease', 'revoke', 'state')
  -- The lease field outlives its attempt (cycle.lua): only a running task's is current.
  if f[1] == token and f[3] == 'STARTED' then
    redis.call('XCLAIM', stream, GROUP, worker, 0, token, 'JUSTID')
    if progress ~= '' then redis.call('HSET', tk, 'progress', progress) end
    if f[2] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
