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
  key says the same), followed by the records of the recent grants of ``RL_FAST`` (the
  lean script of the uncontended acquire), newest first: the refund RL_LEAVE gives a
  grant of its own record, without a key per grant; every write of the tat keeps them;
* ``ns:{g}:rl:n:q`` zset — its FIFO queue: waiter token -> ticket (``ns:{g}:seq``);
* ``ns:{g}:rl:n:m`` hash — the same waiters -> their cost (and ``j`` for a joint one);
* ``ns:{g}:rl:n:x`` zset — the same waiters -> queue lease expiry. A waiter renews it on
  every call (at least every third of a lease); one whose process died expires and leaves
  the queue at the next call of anybody, which wakes the next head;
* ``ns:{g}:rl:n:s`` — the total of the schedule shifts late callers asked for (``late``);
* ``ns:{g}:w:<token>`` list — a waiter's wake-up: the script that grants it pushes the
  grant's instant there, one that makes it the head of a queue pushes ``h`` (call back);
  the waiter ``BLPOP``s it (a message that waits to be read: no race between "subscribe"
  and "check", and no second round trip to learn a grant);
* ``ns:{g}:g:<token>`` — a grant's record (its instant, each limiter's ``tat`` after it,
  then each limiter's shift total then; once its late report is applied, the totals less
  that report's shift, so a report sent twice moves the schedule once), kept until
  the grant's instant plus a lease: a caller cancelled after the script granted it leaves
  with ``RL_LEAVE``, which refunds the grant if nothing was taken after it;
* ``ns:{g}:r:<token>`` — the marker of a late report applied for a grant that has no record
  of its own (one of ``RL_FAST``'s), so the same report sent again moves nothing;
* ``ns:{g}:epoch`` hash — ``id``, made once and never expired, and ``rec``: the instant a
  process that knew the old ``id`` found it gone (Redis lost its state). A limiter whose
  ``tat`` is missing after ``rec`` starts *spent as of* ``rec`` (``tat = rec + burst * T``),
  the worst state it could have had, so a restart never grants a burst above the limit.

A grant may lie in the near future: when the cost conforms within ``horizon`` of now, the
script takes it *as of its due instant* and the caller sleeps locally until that instant
(on its estimate of the server's clock) before it returns. So the wake-up lateness of a
waiter never costs rate (nothing is charged from a late "now"), returns keep the server's
spacing, and every script call grants, in one loop, every waiter at the head of a queue
that is due within the horizon (the local ``RateLimit``'s grant loop), so the queue moves
at the rate even when a message takes longer than one interval to reach a waiter.
"""

from __future__ import annotations

from .scripts import SEM_STATE_LUA

__all__ = [
    "LIMITS_ACQUIRE",
    "RL_ACQUIRE",
    "RL_ADJUST",
    "RL_FAST",
    "RL_FAST_LEAVE",
    "RL_LEAVE",
    "RL_STATE",
]

# Shared by the scripts: the clock, the epoch and a limiter's tat.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.17g', x) end
local function epoch(known, fresh)
  local got = redis.call('HMGET', KEYS[1], 'id', 'rec')
  local id, rec = got[1], got[2]
  if not id then
    id = fresh
    redis.call('HSET', KEYS[1], 'id', id)
  end
  if known ~= '' and known ~= id and not rec then
    rec = fmt(now)
    redis.call('HSET', KEYS[1], 'rec', rec)
  end
  return id, rec and tonumber(rec)
end
-- A tat key holds the tat, then the records of RL_FAST's recent grants (`` <token>:<tat>``
-- each, newest first; see RL_FAST): a write of the tat keeps them (the records read here).
local tails = {}
local function read_tat(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local tat, tail = string.match(v, '^(%S+)(.*)$')
  tails[key] = tail
  return tat
end
local function get_tat(key, rec, T, burst)
  local v = read_tat(key)
  if v then return tonumber(v) end
  if rec then return rec + burst * T end
  return -1
end
local function set_tat(key, tat)
  local s = fmt(tat)
  redis.call('SET', key, s .. (tails[key] or ''), 'PX',
             math.max(math.floor((tat - now) / 1000), 0) + 1000)
  return s
end
-- A caller (grant ``tok``) resumed ``need`` us later than the headroom covers: the grants
-- not yet made move back as much, so the window that starts at its late return holds no
-- more than the limit. Shifts made since that grant count towards it (each limiter keeps
-- their total, and each grant's record the total then): a run of late callers after one
-- stall moves the schedule once, not once each.
local function late(pre, tok, need, tat_keys, total_keys)
  local gk = pre .. 'g:' .. tok
  local g = redis.call('GET', gk)
  if not g then
    -- No record (a grant of RL_FAST keeps none of its own; or it expired): the marker of
    -- this report, if it was applied already.
    gk = pre .. 'r:' .. tok
    g = redis.call('GET', gk)
  end
  local rec = {}
  if g then for v in string.gmatch(g, '%S+') do rec[#rec + 1] = v end end
  local n = #tat_keys
  local out = {rec[1]}
  for i = 1, n do
    local total = tonumber(redis.call('GET', total_keys[i]) or '0')
    local add = need - (total - tonumber(rec[1 + n + i] or total))
    if add > 0 then
      local v = read_tat(tat_keys[i])
      if v then set_tat(tat_keys[i], tonumber(v) + add) end
      total = total + add
      redis.call('SET', total_keys[i], fmt(total), 'PX', 3600000)
    end
    out[1 + i] = rec[1 + i] or '0'
    out[1 + n + i] = fmt(total - need)
  end
  -- Applied: the record's shift totals now say ``need`` was shifted since the grant, so the
  -- same report sent again (by a caller that could not learn whether its call ran: it was
  -- cancelled, or the reply was lost) moves nothing. A report with no record leaves a
  -- marker (``r:<tok>``) that says the same.
  if g and #rec >= 1 + n then
    redis.call('SET', gk, table.concat(out, ' '), 'KEEPTTL')
  elseif not g then
    out[1] = '0'
    redis.call('SET', gk, table.concat(out, ' '), 'PX', 3600000)
  end
end
"""

# KEYS: epoch, then per limiter: tat, queue, queue leases, entries, shift total.
# ARGV: token, known epoch ('' if none), fresh epoch id, lease_us, horizon_us, prefix,
#       mode ('0' a first call, '1' try: grant now or fail, never queue, '2' a waiter's
#       later call), then per limiter: T_us, burst, cost; then
#       the late reports of this process's earlier grants on these limiters, as pairs
#       (token, need_us): a late caller does not pay a round trip to report (see ``late``).
# -> {1, instant, epoch, now} granted as of ``instant`` (server us; the caller returns then)
#  | {0, due, epoch, now} queued, the head of every queue: due at ``due``
#  | {0, -1, epoch, now} queued behind others: wait for the wake-up
#  | {0, -2, epoch, now} ``try`` failed
_ACQ_HEAD = """
local token, lease, horizon, pre = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local mode = ARGV[7] -- '0' a first call, '1' try_acquire, '2' a waiter calling again
local id, rec = epoch(ARGV[2], ARGV[3])
if mode == '2' then
  -- Granted already (by another caller's grant loop, or a call whose reply was lost)?
  local g = redis.call('GET', pre .. 'g:' .. token)
  if g then return {1, tonumber(string.match(g, '^(%S+)')), id, now} end
end
-- (a joint script with a semaphore passes its keys after the limiters', and its arguments
-- after theirs: SEM_KEYS, SEM_ARGS; see LIMITS_ACQUIRE)
local n = (#KEYS - 1 - SEM_KEYS) / 5
-- j: 1 tat, 2 queue, 3 leases, 4 entries, 5 shift total
local function K(i, j) return KEYS[5 * i - 4 + j] end
local T, B, C, tats, heads, sig = {}, {}, {}, {}, {}, {}
if #ARGV > 7 + 3 * n + SEM_ARGS then
  local tk, sk = {}, {}
  for i = 1, n do tk[i], sk[i] = K(i, 1), K(i, 5) end
  for a = 8 + 3 * n + SEM_ARGS, #ARGV, 2 do late(pre, ARGV[a], tonumber(ARGV[a + 1]), tk, sk) end
end
for i = 1, n do
  local b = 7 + 3 * i
  T[i], B[i], C[i] = tonumber(ARGV[b - 2]), tonumber(ARGV[b - 1]), tonumber(ARGV[b])
end
local function due(i, c) return tats[i] + (c - B[i]) * T[i] end
local function take(i, c, s)
  local tat = tats[i]
  if s > tat then tat = s end
  tats[i] = tat + c * T[i]
  return set_tat(K(i, 1), tats[i])
end
local function record(tok, s, recs)
  -- (a grant of the fast path records no shift totals: late() then counts none as made
  -- since it, which can only shift more, never less)
  local text = fmt(s) .. ' ' .. table.concat(recs, ' ')
  if #sig > 0 then text = text .. ' ' .. table.concat(sig, ' ') end
  redis.call('SET', pre .. 'g:' .. tok, text,
             'PX', math.floor((s - now + lease) / 1000) + 1)
end
"""

_ACQ_FAST = """
if mode ~= '2' then
  -- The fast path (a new caller is not queued): nobody queued and the cost due within the
  -- horizon (now, for a try): granted, without touching the queues. Five commands for one
  -- limiter.
  local free, s = true, now
  for i = 1, n do
    if redis.call('ZCARD', K(i, 2)) > 0 then free = false break end
    tats[i] = get_tat(K(i, 1), rec, T[i], B[i])
    s = math.max(s, due(i, C[i]))
  end
  if free and s <= now + (mode == '1' and 0 or horizon) then
    local recs = {}
    for i = 1, n do recs[i] = take(i, C[i], s) end
    record(token, s, recs)
    return {1, s, id, now}
  end
  if mode == '1' then return {0, -2, id, now} end
end
"""

# The queue: the hooks ``sem`` (a table of functions, or nil) add a Limits' semaphore.
_ACQ_QUEUE = """
for i = 1, n do
  heads[i] = redis.call('ZRANGE', K(i, 2), 0, 0)[1]
  -- waiters whose process stopped renewing their lease leave (charged nothing)
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', K(i, 3), '-inf', now)) do
    redis.call('ZREM', K(i, 2), dead)
    redis.call('ZREM', K(i, 3), dead)
    redis.call('HDEL', K(i, 4), dead)
  end
  tats[i] = get_tat(K(i, 1), rec, T[i], B[i])
  sig[i] = redis.call('GET', K(i, 5)) or '0'
end
local function notify(tok, msg)
  if tok == token then return end
  local w = pre .. 'w:' .. tok
  redis.call('RPUSH', w, msg)
  redis.call('PEXPIRE', w, math.floor(lease / 1000))
end
local function unqueue(i, tok)
  redis.call('ZREM', K(i, 2), tok)
  redis.call('ZREM', K(i, 3), tok)
  redis.call('HDEL', K(i, 4), tok)
end
-- Queued in every queue, or queued again at the back of all of them (a queue lease ran out
-- in one): joint waiters keep one order in every queue, so two of them never wait for each
-- other.
local queued = true
for i = 1, n do
  if not redis.call('ZSCORE', K(i, 2), token) then queued = false end
end
if sem and not sem.queued() then queued = false end
if not queued then
  local seq = redis.call('INCR', pre .. 'seq')
  for i = 1, n do
    redis.call('ZADD', K(i, 2), seq, token)
    redis.call('HSET', K(i, 4), token, fmt(C[i]) .. ((n > 1 or sem) and ' j' or ''))
  end
  if sem then sem.enqueue() end
end
for i = 1, n do
  redis.call('ZADD', K(i, 3), now + lease, token)
  for j = 2, 4 do redis.call('PEXPIRE', K(i, j), math.floor(3 * lease / 1000)) end
end
if sem then sem.renew() end
local mine = nil
-- The grant loop, per limiter: single-limiter waiters at the head, while due within the
-- horizon, are granted as of their due instants and told so (FIFO, head-of-line: it stops at
-- the first that is not due, or that also waits for other limiters).
for i = 1, n do
  while true do
    local h = redis.call('ZRANGE', K(i, 2), 0, 0)[1]
    if not h then break end
    local e = redis.call('HGET', K(i, 4), h)
    if not e or string.find(e, 'j') then break end
    local c = tonumber(e)
    local s = due(i, c)
    if s > now + horizon then break end
    if s < now then s = now end
    redis.call('SET', pre .. 'g:' .. h, fmt(s) .. ' ' .. take(i, c, s) .. ' ' .. sig[i],
               'PX', math.floor((s - now + lease) / 1000) + 1)
    unqueue(i, h)
    if h == token then mine = s else notify(h, fmt(s)) end
  end
end
-- A joint caller heading every queue (its limiters are this script's): all or nothing.
-- With a semaphore, it must also be the head of the semaphore's queue, and fit (its grant
-- rule, see scripts.SEM_STATE_LUA), or it waits for a wake-up: the semaphore's grant loop
-- tells it when it fits.
local first = true
for i = 1, n do
  if redis.call('ZRANGE', K(i, 2), 0, 0)[1] ~= token then first = false end
end
if sem and not sem.fits() then first = false end
local s = now
local fenced = nil
if first then
  for i = 1, n do s = math.max(s, due(i, C[i])) end
  if s <= now + horizon then
    local recs = {}
    for i = 1, n do
      recs[i] = take(i, C[i], s)
      unqueue(i, token)
    end
    record(token, s, recs)
    if sem then fenced = sem.take() end
    mine = s
  end
end
if sem then sem.save() end
-- New heads are told (they call back: to be granted, or to learn when they are due).
for i = 1, n do
  local h = redis.call('ZRANGE', K(i, 2), 0, 0)[1]
  if h and h ~= heads[i] then notify(h, 'h') end
end
if mine then
  redis.call('DEL', pre .. 'w:' .. token)
  return {1, mine, id, now, fenced}
end
if first then return {0, s, id, now} end
return {0, -1, id, now}
"""

RL_ACQUIRE = (
    "local SEM_KEYS, SEM_ARGS, sem = 0, 0, nil\n" + _PRELUDE + _ACQ_HEAD + _ACQ_FAST + _ACQ_QUEUE
)

# LIMITS_ACQUIRE: a Limits of rate limits and one corral.redis.Semaphore, all or nothing in
# one script: RL_ACQUIRE's KEYS and ARGV, the semaphore's five keys (m, h, q, qx, e) after
# the limiters', and its arguments (lease_ms, weight, size) after the limiters' triples
# (before the late reports). Its first call is a waiter's (mode '2': the fast path knows no
# semaphore); a try passes horizon 0 and leaves if it was not granted at once. The
# semaphore's rules are its own scripts' (scripts.SEM_STATE_LUA: purge, the grant loop,
# epoch, grace, fences), run first so that its names (``now`` in ms) sit under the rate
# limits' (``now`` in µs). -> RL_ACQUIRE's replies, a grant with the permit's fence
# appended: {1, instant, epoch, now, fence}; or {-3, size} the semaphore has another size.
LIMITS_ACQUIRE = (
    """
local SEM_KEYS, SEM_ARGS = 5, 3
local M, H, Q, QX, E = KEYS[#KEYS - 4], KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1],
  KEYS[#KEYS]
local sa = 7 + 3 * ((#KEYS - 6) / 5)
local my_lease, sem_wt, sem_size = tonumber(ARGV[sa + 1]), tonumber(ARGV[sa + 2]),
  tonumber(ARGV[sa + 3])
"""
    + SEM_STATE_LUA
    + """
if size ~= 0 and size ~= sem_size then return {-3, size} end
size = sem_size
"""
    + _PRELUDE
    + """
local sem = {}
function sem.queued() return redis.call('ZSCORE', Q, ARGV[1]) ~= false end
function sem.enqueue()
  local tok = ARGV[1]
  redis.call('HSET', M, 'size', size, 'w' .. tok, sem_wt, 'l' .. tok, my_lease,
             'j' .. tok, ARGV[6] .. 'w:' .. tok)
  redis.call('ZADD', Q, redis.call('HINCRBY', M, 'seq', 1), tok)
end
function sem.renew() redis.call('ZADD', QX, clock() + my_lease, ARGV[1]) end
function sem.fits()
  purge()
  return grant(ARGV[1]) == ARGV[1]
end
function sem.take()
  local f = hold(ARGV[1], sem_wt)
  grant(ARGV[1])  -- the waiters behind it that fit now (or the next Limits waiter, woken)
  return f
end
function sem.save() save() end
"""
    + _ACQ_HEAD
    + _ACQ_QUEUE
)

# KEYS: epoch, then per limiter: tat, queue, queue leases, entries, shift total.
# ARGV: token, prefix, then per limiter: T_us, cost. The acquire ``token`` gives up
# (cancelled, timed out, its caller gone): out of every queue (waking the next heads), and
# if it had been granted, the grant is refunded when nothing was taken after it (its tat is
# still the latest; else its slot goes unused: a refund would let two grants share one
# instant).
# -> 0 nothing to undo | 1 left the queue | 2 grant refunded | 3 grant kept (not the last)
RL_LEAVE = (
    _PRELUDE
    + """
local token, pre = ARGV[1], ARGV[2]
local n = (#KEYS - 1) / 5
local out = 0
for i = 1, n do
  local q = KEYS[5 * i - 2]
  local h = redis.call('ZRANGE', q, 0, 0)[1]
  if redis.call('ZREM', q, token) == 1 then out = 1 end
  redis.call('ZREM', KEYS[5 * i - 1], token)
  redis.call('HDEL', KEYS[5 * i], token)
  if h == token then
    local nh = redis.call('ZRANGE', q, 0, 0)[1]
    if nh then
      local w = pre .. 'w:' .. nh
      redis.call('RPUSH', w, 'h')
      redis.call('PEXPIRE', w, 60000)
    end
  end
end
redis.call('DEL', pre .. 'w:' .. token)
local g = redis.call('GET', pre .. 'g:' .. token)
if not g then return out end
redis.call('DEL', pre .. 'g:' .. token)
local recorded = {}
for v in string.gmatch(g, '%S+') do recorded[#recorded + 1] = v end
for i = 1, n do
  if read_tat(KEYS[5 * i - 3]) ~= recorded[i + 1] then return 3 end
end
for i = 1, n do
  local T, c = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  set_tat(KEYS[5 * i - 3], tonumber(recorded[i + 1]) - c * T)
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

# The uncontended acquire of one limiter, lean: RL_ACQUIRE's fast path (mode '0', one
# limiter, no late reports) and nothing else, so an acquire that finds no queue pays for
# five commands (TIME, the epoch's HGET, EXISTS on the queue, GET and SET of the tat) and
# three arguments, not for the queue machinery it does not use. A caller it cannot grant
# (somebody queued, or its cost not due within the horizon) calls RL_ACQUIRE, which queues
# it: this script then wrote nothing but the epoch.
#
# The rules in it (the epoch, the tat, GCRA's due time and take) are copies of
# ``_PRELUDE``'s and RL_ACQUIRE's, written out in line: the prelude's local functions are
# closures made again at every call, a third of this script's time. The copies are checked
# against the originals by tests/redis_ext/test_ratelimit_fast.py, which drives both
# scripts through the same sequences (see tests/inlines/registry.py).
#
# Its grant keeps no record key of its own (a new key per grant, with an expiry, cost as
# much as the rest of the script), nor a key of recent grants (a second SET: a fifth of the
# script): the tat key itself carries the records of this script's recent grants after the
# tat, newest first, each ``<token's first 12 characters>:<tat after it>``, and every
# script that writes the tat keeps them (``_PRELUDE``'s read_tat/set_tat). That is what a
# refund needs: only the last grant of a limiter can be refunded, or one whose later grants
# were all refunded first (RL_LEAVE's rule: nothing was taken after it), so the last four
# or five are kept (up to about 170 bytes), and they live as long as the tat: once the tat
# has passed, a refund would change nothing (a tat in the past means the whole burst is
# free).
# RL_FAST_LEAVE refunds from them; a late report of such a grant leaves a marker instead
# (see ``late``).
# KEYS: epoch, tat, queue: every key it touches, as Redis asks (one hash tag, so one Cluster
#       slot).
# ARGV: one argument, "token cost known T_us burst horizon_us": the token (also the fresh
#       epoch id if Redis has none), the cost, the known epoch ('' if none) and the
#       limiter's constants (every argument costs the client more to pack than the server
#       to split; the end from ``known`` on is made again only when the epoch changes).
# -> now (an integer): granted as of now, and the epoch is the known one (the common reply:
#    one integer is cheaper to parse than an array)
#  | {1, instant, epoch, now} granted as of ``instant`` (server us)
#  | {2, 0, epoch, now} not granted here: call RL_ACQUIRE
#    (``epoch`` is 0 when it is the known one)
# inline of corral._redis.rate_scripts.RL_ACQUIRE
RL_FAST = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local token, c, known, T, B, horizon =
  string.match(ARGV[1], '^(%S+) (%S+) (%S*) (%S+) (%S+) (%S+)$')
c, T, B = tonumber(c), tonumber(T), tonumber(B)
-- inline of _PRELUDE's epoch() (``rec`` is read only where it matters: an epoch that is
-- not the known one, or a missing tat)
local id = redis.call('HGET', KEYS[1], 'id')
local rec = nil
if not id then
  id = token
  redis.call('HSET', KEYS[1], 'id', id)
end
local e = 0
if id ~= known then
  e = id
  rec = redis.call('HGET', KEYS[1], 'rec')
  if known ~= '' and not rec then
    rec = string.format('%.17g', now)
    redis.call('HSET', KEYS[1], 'rec', rec)
  end
end
-- inline of RL_ACQUIRE's fast path, for one limiter
if redis.call('EXISTS', KEYS[3]) == 1 then return {2, 0, e, now} end
local v = redis.call('GET', KEYS[2])  -- (get_tat, and the records after it: read_tat)
local tat, tail = nil, ''
if v then
  tat, tail = string.match(v, '^(%S+)(.*)$')
  tat = tonumber(tat)
else
  if e == 0 then rec = redis.call('HGET', KEYS[1], 'rec') end
  if rec then tat = tonumber(rec) + B * T else tat = -1 end
end
local s = tat + (c - B) * T  -- (due)
if s < now then s = now end
if s > now + tonumber(horizon) then return {2, 0, e, now} end
if s > tat then tat = s end  -- (take)
tat = tat + c * T
local ts = string.format('%.17g', tat)  -- (set_tat)
-- This grant's record, first among the recent ones (a grant of cost 0 has nothing to
-- refund), the oldest beyond 130 bytes gone first (so the last four or five are kept); one
-- concatenation, one new string.
if c > 0 then
  if #tail > 130 then tail = string.sub(tail, 1, (string.find(tail, ' ', 100, true) or 131) - 1) end
  v = ts .. ' ' .. string.sub(token, 1, 12) .. ':' .. ts .. tail
else
  v = ts .. tail
end
-- (set_tat's expiry, a second after the tat passes: the tat is not in the past here, and
-- x - x % 1 is math.floor(x) without two calls to the math library)
local ms = (tat - now) / 1000 + 1000
redis.call('SET', KEYS[2], v, 'PX', ms - ms % 1)
if s == now and e == 0 then return now end
return {1, s, e, now}
"""

# KEYS: tat. ARGV: token, T_us, cost. RL_LEAVE for a grant of RL_FAST (which never
# queues): its record out of the tat key's, and refunded if nothing was taken after it (the
# tat is still the one it left; RL_LEAVE's rule). -> as RL_LEAVE: 0 nothing to undo (not
# granted, or no longer among the recent grants: kept) | 2 refunded | 3 kept (something was
# taken after it)
# inline of corral._redis.rate_scripts.RL_LEAVE
RL_FAST_LEAVE = (
    _PRELUDE
    + """
local cur = read_tat(KEYS[1])
if not cur then return 0 end
local tail, tok = tails[KEYS[1]], string.sub(ARGV[1], 1, 12)
local i = string.find(tail, ' ' .. tok .. ':', 1, true)
if not i then return 0 end
local ts = string.match(tail, '^[^ ]+', i + #tok + 2)
tails[KEYS[1]] = string.sub(tail, 1, i - 1) .. string.sub(tail, i + #tok + #ts + 2)
if cur ~= ts then
  redis.call('SET', KEYS[1], cur .. tails[KEYS[1]], 'KEEPTTL')
  return 3
end
set_tat(KEYS[1], tonumber(ts) - tonumber(ARGV[3]) * tonumber(ARGV[2]))
return 2
"""
)
