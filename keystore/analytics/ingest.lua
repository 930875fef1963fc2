-- Tollgate usage analytics: count a batch of usage records at most once each.
--
-- ARGV[1] = key prefix, ARGV[2] = number of records, then per record
--   request id, remember-until (Unix ms), dims,
--   3 x (bucket key suffix, expire-at (Unix s)) for minute, hour, day,
--   14 counters (Totals in storage order),
--   the raw record's JSON ('' when raw records are off), its time and its
--   drop-after time (Unix ms).
-- A record whose id is already remembered ("<prefix>a:seen:<id>") is
-- skipped; otherwise the id is remembered until its expiry and every non-zero
-- counter is added to field "<dims>\30<index>" of each bucket hash, which
-- expires with its retention; a kept raw record joins the sorted set
-- "<prefix>a:raw" scored by its time, which expires with its newest record.
-- Returns how many records were counted.
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
local per = 3 + 6 + 14 + 3
local counted = 0
local i = 3
for _ = 1, n do
  local rid, untilms, dims = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SET', prefix .. 'a:seen:' .. rid, '1', 'NX', 'PXAT', untilms) then
    counted = counted + 1
    for b = 0, 2 do
      local key = prefix .. 'a:' .. ARGV[i + 3 + 2 * b]
      for f = 0, 13 do
        local v = ARGV[i + 9 + f]
        if v ~= '0' then
          redis.call('HINCRBY', key, dims .. '\30' .. f, v)
        end
      end
      redis.call('EXPIREAT', key, ARGV[i + 4 + 2 * b])
    end
    local raw = ARGV[i + 23]
    if raw ~= '' then
      local rawkey = prefix .. 'a:raw'
      redis.call('ZADD', rawkey, ARGV[i + 24], raw)
      if redis.call('PTTL', rawkey) < 0 then
        redis.call('PEXPIREAT', rawkey, ARGV[i + 25])
      else
        redis.call('PEXPIREAT', rawkey, ARGV[i + 25], 'GT')
      end
    end
  end
  i = i + per
end
return counted
