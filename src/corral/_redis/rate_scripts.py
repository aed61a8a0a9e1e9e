"""The Lua scripts behind ``corral.redis.RateLimit`` and ``Limits`` (both flavours).

Every state change is one script, run atomically by Redis in one round trip, and every
decision uses the server's clock (``TIME``, in microseconds): no client clock enters it.

The rule is GCRA (as ``corral.RateLimit``'s, see ``_core/ratelimit.py``): one number per
limiter, ``tat`` (the theoretical arrival time), with ``T`` microseconds of schedule per
unit of cost. A cost ``c`` conforms at ``s`` iff ``s >= tat + (c - burst) * T``; taking it
moves ``tat`` to ``max(tat, s) + c * T``. A ``Limits`` is the same rule over several
limiters at one instant ``s``: every limiter's cost is taken at once, or none.

Keys, for a namespace ``ns``, a hash tag ``g`` (every key of one ``Limits`` shares it, so
one script touches one Cluster slot) and a limiter name ``n``:

* ``ns:{g}:rl:n:t`` — the limiter's ``tat`` (``%.17g``: exact for a double), expiring a
  second after it passes (a ``tat`` in the past means the whole burst is free: a missing
  key says the same);
* ``ns:{g}:rl:n:q`` zset — its FIFO queue: waiter token -> ticket (``ns:{g}:seq``);
* ``ns:{g}:rl:n:x`` zset — the same waiters -> queue lease expiry. A waiter renews it on
  every call (at least every third of a lease); one whose process died expires and leaves
  the queue at the next call of anybody, which wakes the next head;
* ``ns:{g}:w:<token>`` list — a waiter's wake-up: the script that makes it the head of a
  queue pushes there, the waiter ``BLPOP``s it (a message that waits to be read: no race
  between "subscribe" and "check");
* ``ns:{g}:g:<token>`` — a grant's record (each limiter's ``tat`` after it), kept until
  the grant's instant plus a lease: a caller cancelled after the script granted it leaves
  with ``RL_LEAVE``, which refunds the grant if nothing was taken after it;
* ``ns:{g}:epoch`` hash — ``id``, made once and never expired, and ``rec``: the instant a
  process that knew the old ``id`` found it gone (Redis lost its state). A limiter whose
  ``tat`` is missing after ``rec`` starts *spent as of* ``rec`` (``tat = rec + burst * T``),
  the worst state it could have had, so a restart never grants a burst above the limit.

A grant may lie in the near future: when the cost conforms within ``horizon`` of now, the
script takes it *as of its due instant* and tells the caller how long to sleep locally
before returning. The caller's own wake-up lateness then never costs rate (nothing is
charged from a late "now"), and the queue moves on without waiting for that sleep.
"""

from __future__ import annotations

__all__ = ["RL_ACQUIRE", "RL_ADJUST", "RL_LEAVE", "RL_STATE"]

# Shared by the scripts: the clock, the epoch and a limiter's tat.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.17g', x) end
local function epoch(known, fresh)
  local id = redis.call('HGET', KEYS[1], 'id')
  if not id then
    id = fresh
    redis.call('HSET', KEYS[1], 'id', id)
  end
  local rec = redis.call('HGET', KEYS[1], 'rec')
  if known ~= '' and known ~= id and not rec then
    rec = fmt(now)
    redis.call('HSET', KEYS[1], 'rec', rec)
  end
  return id, rec and tonumber(rec)
end
local function get_tat(key, rec, T, burst)
  local v = redis.call('GET', key)
  if v then return tonumber(v) end
  if rec then return rec + burst * T end
  return -1
end
local function set_tat(key, tat)
  local s = fmt(tat)
  redis.call('SET', key, s, 'PX', math.max(math.floor((tat - now) / 1000), 0) + 1000)
  return s
end
"""

# KEYS: epoch, then per limiter: tat, queue, queue leases.
# ARGV: token, known epoch ('' if none), fresh epoch id, lease_us, horizon_us, prefix,
#       try (1: never queue), then per limiter: T_us, burst, cost.
# -> {1, sleep_us, epoch} granted, effective after sleep_us
#  | {0, wait_us, epoch} queued: the head of every queue, due in wait_us
#  | {0, -1, epoch} queued behind others (wait for the wake-up) | {0, -2, epoch} try failed
RL_ACQUIRE = (
    _PRELUDE
    + """
local token, lease, horizon, pre = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local try = ARGV[7] == '1'
local id, rec = epoch(ARGV[2], ARGV[3])
local n = (#KEYS - 1) / 3
local tats, heads, queued, empty = {}, {}, false, true
for i = 1, n do
  local q, x = KEYS[3 * i], KEYS[3 * i + 1]
  local h = redis.call('ZRANGE', q, 0, 0)[1]
  -- waiters whose process stopped renewing their lease leave (charged nothing)
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', x, '-inf', now)) do
    redis.call('ZREM', q, dead)
    redis.call('ZREM', x, dead)
  end
  heads[i] = h
  if redis.call('ZSCORE', q, token) then queued = true end
  if redis.call('ZCARD', q) > 0 then empty = false end
end
local function due()
  local s = now
  for i = 1, n do
    local b = 7 + 3 * i
    local T, burst, c = tonumber(ARGV[b - 2]), tonumber(ARGV[b - 1]), tonumber(ARGV[b])
    tats[i] = get_tat(KEYS[3 * i - 1], rec, T, burst)
    local d = tats[i] + (c - burst) * T
    if d > s then s = d end
  end
  return s
end
local function wake_new_heads()
  for i = 1, n do
    local h = redis.call('ZRANGE', KEYS[3 * i], 0, 0)[1]
    if h and h ~= heads[i] and h ~= token then
      local w = pre .. 'w:' .. h
      redis.call('LPUSH', w, '1')
      redis.call('PEXPIRE', w, math.floor(lease / 1000))
    end
  end
end
local result
local first = true
if queued then
  for i = 1, n do
    if redis.call('ZRANGE', KEYS[3 * i], 0, 0)[1] ~= token then first = false end
  end
else
  first = empty
end
if first then
  local s = due()
  if s <= now + horizon and (not try or s <= now) then
    local rec_tats = {}
    for i = 1, n do
      local b = 7 + 3 * i
      local T, c = tonumber(ARGV[b - 2]), tonumber(ARGV[b])
      local tat = tats[i]
      if s > tat then tat = s end
      rec_tats[i] = set_tat(KEYS[3 * i - 1], tat + c * T)
      redis.call('ZREM', KEYS[3 * i], token)
      redis.call('ZREM', KEYS[3 * i + 1], token)
    end
    redis.call('SET', pre .. 'g:' .. token, table.concat(rec_tats, ' '),
               'PX', math.floor((s - now + lease) / 1000) + 1)
    redis.call('DEL', pre .. 'w:' .. token)
    result = {1, math.floor(s - now), id}
  elseif try then
    return {0, -2, id}
  else
    result = {0, math.floor(s - now), id}
  end
elseif try then
  return {0, -2, id}
else
  result = {0, -1, id}
end
if result[1] == 0 then
  local seq = nil
  for i = 1, n do
    local q, x = KEYS[3 * i], KEYS[3 * i + 1]
    if not redis.call('ZSCORE', q, token) then
      seq = seq or redis.call('INCR', pre .. 'seq')
      redis.call('ZADD', q, seq, token)
    end
    redis.call('ZADD', x, now + lease, token)
    redis.call('PEXPIRE', q, math.floor(3 * lease / 1000))
    redis.call('PEXPIRE', x, math.floor(3 * lease / 1000))
  end
end
wake_new_heads()
return result
"""
)

# KEYS: epoch, then per limiter: tat, queue, queue leases. ARGV: token, prefix, then per
# limiter: T_us, cost. The acquire ``token`` gives up (cancelled, timed out, its caller
# gone): out of every queue (waking the next heads), and if the script had granted it,
# the grant is refunded when nothing was taken after it (its tat is still the latest; else
# its slot simply goes unused: a refund then would let two grants share one instant).
# -> 0 nothing to undo | 1 left the queue | 2 grant refunded | 3 grant kept (not the last)
RL_LEAVE = (
    _PRELUDE
    + """
local token, pre = ARGV[1], ARGV[2]
local n = (#KEYS - 1) / 3
local out = 0
for i = 1, n do
  local q = KEYS[3 * i]
  local h = redis.call('ZRANGE', q, 0, 0)[1]
  if redis.call('ZREM', q, token) == 1 then out = 1 end
  redis.call('ZREM', KEYS[3 * i + 1], token)
  if h == token then
    local nh = redis.call('ZRANGE', q, 0, 0)[1]
    if nh then
      local w = pre .. 'w:' .. nh
      redis.call('LPUSH', w, '1')
      redis.call('PEXPIRE', w, 60000)
    end
  end
end
redis.call('DEL', pre .. 'w:' .. token)
local g = redis.call('GET', pre .. 'g:' .. token)
if not g then return out end
redis.call('DEL', pre .. 'g:' .. token)
local recorded = {}
for s in string.gmatch(g, '%S+') do recorded[#recorded + 1] = s end
for i = 1, n do
  if redis.call('GET', KEYS[3 * i - 1]) ~= recorded[i] then return 3 end
end
for i = 1, n do
  local T, c = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  set_tat(KEYS[3 * i - 1], tonumber(recorded[i]) - c * T)
end
return 2
"""
)

# KEYS: epoch, tat. ARGV: known epoch, fresh epoch id, T_us, burst, delta (cost units; < 0
# refunds). A charge is taken as of now and may go beyond the burst (debt: later acquires
# wait until it is paid off); a refund moves tat back. -> {tat - now in us, epoch}
RL_ADJUST = (
    _PRELUDE
    + """
local id, rec = epoch(ARGV[1], ARGV[2])
local T, burst, delta = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = get_tat(KEYS[2], rec, T, burst)
if delta > 0 and tat < now then tat = now end
tat = tat + delta * T
set_tat(KEYS[2], tat)
return {math.floor(tat - now), id}
"""
)

# KEYS: epoch, tat, queue. ARGV: T_us, burst. -> {tat - now in us, queued waiters}
RL_STATE = (
    _PRELUDE
    + """
local rec = redis.call('HGET', KEYS[1], 'rec')
local tat = get_tat(KEYS[2], rec and tonumber(rec), tonumber(ARGV[1]), tonumber(ARGV[2]))
return {math.floor(math.max(tat - now, 0)), redis.call('ZCARD', KEYS[3])}
"""
)
