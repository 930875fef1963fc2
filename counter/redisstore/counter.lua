-- Tollgate counter engine: the atomic half of counter.Backend on Redis.
--
-- Per counter three keys share one hash slot:
--   KEYS[3i-2] hash  "b<idx>" -> usage of bucket idx; "fs"/"fe" flexi window
--   KEYS[3i-1] hash  reservation token -> "<bucket>:<amount>", or for a
--                    lease with a report sequence "<bucket>:<amount>:<seq>:<reported>"
--   KEYS[3i]   zset  reservation token scored by expiry (Unix ms)
-- All time arithmetic happens in Go; this script only counts. Numbers sent
-- back to Redis go through fmt() because Lua would print large values in
-- exponent notation.
--
-- ARGV[1] = "apply":  now, atomic, count, then 11 fields per op:
--   n, limit, force, kind (c|r|f), current, oldest, deadline, fstart, fend,
--   token ("" for none), token expiry
-- ARGV[1] = "adjust": now, kind, oldest, token, actual (<0 releases)
-- ARGV[1] = "lease":  now, count, then 14 fields per op:
--   used, want, min, limit, kind, current, oldest, deadline, fstart, fend,
--   token ("" for none), new token, expiry, seq (0 for none)
-- Each op answers {allowed, used, window start, window end, {idx, used, ...}};
-- adjust answers the same shape, or {-1} when the reservation is unknown;
-- a lease op answers the same five fields and then held, token ("" when the
-- lease is closed) and lost (0/1). A lease is a reservation whose amount is
-- its held budget; the rules are counter.LeaseBackend's, the Go twin is
-- counter/bucket/lease.go.

local function fmt(x)
  return string.format('%d', x)
end

-- parse_rec splits a reservation record into bucket, amount, seq, reported.
local function parse_rec(rec)
  local a = string.find(rec, ':', 1, true)
  local idx = tonumber(string.sub(rec, 1, a - 1))
  local rest = string.sub(rec, a + 1)
  local b = string.find(rest, ':', 1, true)
  if not b then return idx, tonumber(rest), 0, 0 end
  local amt = tonumber(string.sub(rest, 1, b - 1))
  rest = string.sub(rest, b + 1)
  local c = string.find(rest, ':', 1, true)
  return idx, amt, tonumber(string.sub(rest, 1, c - 1)), tonumber(string.sub(rest, c + 1))
end

-- load prunes a counter at now and returns used, oldest, live and the
-- counted buckets (index -> usage).
local function load(h, hr, z, now, kind, oldest)
  local live = false
  if kind == 'f' then
    local fe = tonumber(redis.call('HGET', h, 'fe') or '0')
    if fe > 0 and now < fe then
      oldest = tonumber(redis.call('HGET', h, 'fs'))
      live = true
    else
      redis.call('DEL', h)
      oldest = math.huge
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', fmt(now))
  if #expired > 0 then
    for _, tok in ipairs(expired) do
      local rec = redis.call('HGET', hr, tok)
      if rec then
        local idx, amt = parse_rec(rec)
        if idx >= oldest and amt > 0 then
          local f = 'b' .. fmt(idx)
          local v = tonumber(redis.call('HGET', h, f) or '0') - amt
          if v > 0 then redis.call('HSET', h, f, fmt(v)) else redis.call('HDEL', h, f) end
        end
        redis.call('HDEL', hr, tok)
      end
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', fmt(now))
  end
  local used = 0
  local kept = {}
  local flat = redis.call('HGETALL', h)
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.byte(f, 1) == 98 then -- 'b'
      local idx = tonumber(string.sub(f, 2))
      if idx < oldest then
        redis.call('HDEL', h, f)
      else
        local v = tonumber(flat[i + 1])
        used = used + v
        kept[idx] = v
      end
    end
  end
  return used, oldest, live, kept
end

-- outcome builds the reply for one counter from the counted buckets.
local function outcome(h, kind, allowed, used, kept)
  local ws, we = 0, 0
  local buckets = {}
  if kind == 'f' then
    ws = tonumber(redis.call('HGET', h, 'fs') or '0')
    we = tonumber(redis.call('HGET', h, 'fe') or '0')
  elseif kind == 'r' then
    local idxs = {}
    for idx, v in pairs(kept) do
      if v > 0 then table.insert(idxs, idx) end
    end
    table.sort(idxs)
    for _, idx in ipairs(idxs) do
      table.insert(buckets, idx)
      table.insert(buckets, kept[idx])
    end
  end
  return {allowed and 1 or 0, used, ws, we, buckets}
end

-- extend makes a key live at least until the absolute instant upto.
local function extend(key, now, upto)
  local want = upto - now + 1000
  if want <= 0 then return end
  local have = redis.call('PTTL', key)
  if have < want then redis.call('PEXPIRE', key, fmt(want)) end
end

local function charge(h, hr, z, now, op, live)
  local cur = op.current
  local kind = op.kind
  if kind == 'f' then
    if not live and (op.n > 0 or op.token ~= '') then
      redis.call('HSET', h, 'fs', fmt(op.fstart), 'fe', fmt(op.fend))
    end
    cur = tonumber(redis.call('HGET', h, 'fs') or '0')
  end
  if op.n > 0 then
    redis.call('HINCRBY', h, 'b' .. fmt(cur), fmt(op.n))
  end
  local upto = op.deadline
  if kind == 'f' then upto = tonumber(redis.call('HGET', h, 'fe') or '0') end
  if op.token ~= '' then
    redis.call('HSET', hr, op.token, fmt(cur) .. ':' .. fmt(op.n))
    redis.call('ZADD', z, fmt(op.texp), op.token)
    if op.texp > upto then upto = op.texp end
    extend(hr, now, upto)
    extend(z, now, upto)
  end
  extend(h, now, upto)
  return cur
end


-- addb changes bucket idx by delta, never below zero (an empty bucket is
-- deleted), and keeps kept in step.
local function addb(h, kept, idx, delta)
  local f = 'b' .. fmt(idx)
  local v = tonumber(redis.call('HGET', h, f) or '0') + delta
  if v > 0 then redis.call('HSET', h, f, fmt(v)) else redis.call('HDEL', h, f); v = 0 end
  kept[idx] = v
end

local function lease_op(h, hr, z, now, op)
  local used, oldest, live, kept = load(h, hr, z, now, op.kind, op.oldest)
  local cur = op.current
  if op.kind == 'f' then
    cur = 0
    if live then cur = oldest end
  end
  local rec = false
  if op.token ~= '' then rec = redis.call('HGET', hr, op.token) end
  local ridx, ramt, rseq, rrep = 0, 0, 0, 0
  if rec then ridx, ramt, rseq, rrep = parse_rec(rec) end
  local u = op.used
  if rec and op.seq > 0 and rseq == op.seq then
    u = math.max(0, op.used - rrep) -- a re-send: only what is new
  end
  local held, force, lost, have = 0, u, false, false
  if rec and ramt > 0 and ridx == cur and (op.kind ~= 'f' or live) then
    held = ramt
    local taken = math.min(held, u)
    held = held - taken
    force = force - taken
    have = true
  elseif rec and ramt > 0 then
    -- a lease of an ended frame: settle it at used where it was drawn
    if ridx >= oldest then
      local before = tonumber(redis.call('HGET', h, 'b' .. fmt(ridx)) or '0')
      addb(h, kept, ridx, u - ramt)
      used = used + kept[ridx] - before
    end
    ramt = 0
    force = 0
    lost = true
  elseif op.token ~= '' then
    lost = true
  end
  local function open()
    if op.kind == 'f' and not live then
      redis.call('HSET', h, 'fs', fmt(op.fstart), 'fe', fmt(op.fend))
      cur, oldest, live = op.fstart, op.fstart, true
    end
  end
  if force > 0 then
    open()
    addb(h, kept, cur, force)
    used = used + force
  end
  if op.want < held then
    addb(h, kept, cur, op.want - held)
    used = used - (held - op.want)
    held = op.want
  elseif op.want > held then
    local g = math.min(op.want - held, math.max(0, op.limit - used))
    if held + g < op.min then g = 0 end
    if g > 0 then
      open()
      addb(h, kept, cur, g)
      used = used + g
      held = held + g
    end
  end
  -- the record under op.token: the lease, a tombstone (only with a seq), or nothing
  local keep = have and held > 0
  local upto = op.deadline
  if op.kind == 'f' then upto = tonumber(redis.call('HGET', h, 'fe') or '0') end
  if op.seq > 0 and op.token ~= '' and not keep then
    if not rec then rseq, rrep = 0, 0 end
    ridx, ramt, keep = cur, 0, true
  end
  local token = ''
  if keep then
    local amt = 0
    if have then amt = held end
    if have and held > 0 then ridx = cur end
    local v = fmt(ridx) .. ':' .. fmt(amt)
    if op.seq > 0 then
      if rseq ~= op.seq then rseq, rrep = op.seq, 0 end
      rrep = math.max(rrep, op.used)
      v = v .. ':' .. fmt(rseq) .. ':' .. fmt(rrep)
    elseif rseq > 0 then
      v = v .. ':' .. fmt(rseq) .. ':' .. fmt(rrep)
    end
    redis.call('HSET', hr, op.token, v)
    redis.call('ZADD', z, fmt(op.texp), op.token)
    if have and held > 0 then token = op.token end
  elseif rec then
    redis.call('HDEL', hr, op.token)
    redis.call('ZREM', z, op.token)
  end
  if not have and held > 0 then
    redis.call('HSET', hr, op.newtoken, fmt(cur) .. ':' .. fmt(held))
    redis.call('ZADD', z, fmt(op.texp), op.newtoken)
    token = op.newtoken
  end
  if keep or held > 0 then
    if op.texp > upto then upto = op.texp end
    extend(hr, now, upto)
    extend(z, now, upto)
  end
  extend(h, now, upto)
  local reply = outcome(h, op.kind, true, used, kept)
  table.insert(reply, held)
  table.insert(reply, token)
  table.insert(reply, lost and 1 or 0)
  return reply
end

local mode = ARGV[1]
local now = tonumber(ARGV[2])

if mode == 'apply' then
  local atomic = ARGV[3] == '1'
  local count = tonumber(ARGV[4])
  local ops = {}
  for i = 1, count do
    local a = 4 + (i - 1) * 11
    ops[i] = {
      n = tonumber(ARGV[a + 1]), limit = tonumber(ARGV[a + 2]), force = ARGV[a + 3] == '1',
      kind = ARGV[a + 4], current = tonumber(ARGV[a + 5]), oldest = tonumber(ARGV[a + 6]),
      deadline = tonumber(ARGV[a + 7]), fstart = tonumber(ARGV[a + 8]), fend = tonumber(ARGV[a + 9]),
      token = ARGV[a + 10], texp = tonumber(ARGV[a + 11]),
    }
  end
  local replies = {}
  if not atomic then
    for i, op in ipairs(ops) do
      local h, hr, z = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
      local used, _, live, kept = load(h, hr, z, now, op.kind, op.oldest)
      local ok = used + op.n <= op.limit
      if ok or op.force then
        local cur = charge(h, hr, z, now, op, live)
        used = used + op.n
        kept[cur] = (kept[cur] or 0) + op.n
      end
      replies[i] = outcome(h, op.kind, ok, used, kept)
    end
    return replies
  end
  local pending = {}
  local all = true
  for i, op in ipairs(ops) do
    local h, hr, z = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    local used = load(h, hr, z, now, op.kind, op.oldest)
    local p = pending[h] or 0
    if used + p + op.n > op.limit and not op.force then all = false end
    pending[h] = p + op.n
  end
  for i, op in ipairs(ops) do
    local h, hr, z = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
    local used, _, live, kept = load(h, hr, z, now, op.kind, op.oldest)
    if all then
      local cur = charge(h, hr, z, now, op, live)
      used = used + op.n
      kept[cur] = (kept[cur] or 0) + op.n
    end
    replies[i] = outcome(h, op.kind, all, used, kept)
  end
  return replies
end

if mode == 'adjust' then
  local h, hr, z = KEYS[1], KEYS[2], KEYS[3]
  local kind = ARGV[3]
  local used, oldest, _, kept = load(h, hr, z, now, kind, tonumber(ARGV[4]))
  local tok = ARGV[5]
  local actual = tonumber(ARGV[6])
  local rec = redis.call('HGET', hr, tok)
  if not rec then return {-1} end
  redis.call('HDEL', hr, tok)
  redis.call('ZREM', z, tok)
  local idx, amt = parse_rec(rec)
  if idx >= oldest then
    local delta = -amt
    if actual >= 0 then delta = actual - amt end
    local f = 'b' .. fmt(idx)
    local before = tonumber(redis.call('HGET', h, f) or '0')
    local v = before + delta
    if v > 0 then redis.call('HSET', h, f, fmt(v)) else redis.call('HDEL', h, f); v = 0 end
    used = used + v - before
    kept[idx] = v
  end
  return outcome(h, kind, true, used, kept)
end

if mode == 'lease' then
  local count = tonumber(ARGV[3])
  local replies = {}
  for i = 1, count do
    local a = 3 + (i - 1) * 14
    local op = {
      used = tonumber(ARGV[a + 1]), want = tonumber(ARGV[a + 2]), min = tonumber(ARGV[a + 3]),
      limit = tonumber(ARGV[a + 4]), kind = ARGV[a + 5], current = tonumber(ARGV[a + 6]),
      oldest = tonumber(ARGV[a + 7]), deadline = tonumber(ARGV[a + 8]), fstart = tonumber(ARGV[a + 9]),
      fend = tonumber(ARGV[a + 10]), token = ARGV[a + 11], newtoken = ARGV[a + 12], texp = tonumber(ARGV[a + 13]),
      seq = tonumber(ARGV[a + 14]),
    }
    replies[i] = lease_op(KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], now, op)
  end
  return replies
end

return redis.error_reply('tollgate counter: unknown mode ' .. tostring(mode))
