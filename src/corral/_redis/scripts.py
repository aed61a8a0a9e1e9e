"""The Lua scripts behind ``corral.redis`` (both flavours run the same text).

Every state change of a shared SingleFlight or Semaphore is one script: Redis runs a script
atomically, so no interleaving of processes is ever observable, and a script is one round
trip. Expiry, epochs and fences are decided with the server's clock (``TIME``) inside the
scripts, never with the callers' clocks, which may disagree across hosts.

Key layout (what ``corral.redis.RateLimit`` and any later primitive must follow too)
------------------------------------------------------------------------------------

* **One hash tag per primitive name.** Every key of a primitive starts with ``{name}``
  (a Semaphore's name, a SingleFlight's namespace), so on Redis Cluster all of them live in
  one slot, and every key a script touches is passed in ``KEYS`` (never built inside Lua).
  Pub/sub channels carry the same prefix (classic ``PUBLISH`` reaches every node anyway).
* **The epoch key** ``{name}:e``, a hash, is never expired and never deleted by corral:
  ``t0`` is the server time (µs) at which this Redis first saw the name, ``f`` the last
  fence handed out, ``g`` (Semaphore) the longest lease asked for in this epoch. A script
  that finds it missing knows the state it relies on may be gone (first use, a restart
  without persistence, ``FLUSHALL``, a failover to a replica that never had it): it starts
  a new epoch (``t0`` = now) and treats every other key of the name as void.
* **Grace.** A Semaphore grants nothing until ``t0 + g`` (one full lease after the epoch
  began): a holder of the lost epoch last renewed before the loss, so by then its lease
  has run out on its own clock and it has cancelled its work (it learns it at its next
  renewal even sooner: its token is unknown). A name's first use on a Redis waits this
  grace once too: Redis cannot tell a new name from one whose state it lost.
* **Fences.** Each grant (a Semaphore holder, a SingleFlight leadership) takes
  ``f = max(f + 1, now_us)`` in the script that grants it: strictly increasing while the
  key lives. A new epoch starts at ``f = t0 = now_us``, which is above every fence of the
  lost epoch provided (a) the server's clock did not step back across the loss (a failover
  to another host: clock skew below the grace), and (b) the old counter never ran ahead of
  the clock, i.e. fewer grants than microseconds: one script takes several µs and grants
  one SingleFlight leadership at most; a Semaphore script may grant a batch, which its
  grace (a lease: 10^5 µs and more) covers many times over. Fences fit a double's 53 bits
  (µs since 1970 < 2^51) and are passed as text formatted with ``%.0f``.

SingleFlight keys, for a namespace ``ns`` and a key ``k``:

* ``{ns}:sf:e`` — the epoch (above). A follower that sees ``t0`` change knows the state it
  relied on is gone (an error), instead of mistaking it for a dead leader (a takeover,
  which would run the call a second time).
* ``{ns}:sf:k:lease`` — the leader's token, with the lease as its expiry (``SET NX PX``).
* ``{ns}:sf:k:done`` — with ``share_for=``: the finished call's outcome, kept that long so
  that late arrivals of the same burst get it instead of running the call again.
* ``{ns}:sf:r:<token>`` — the outcome of the flight ``token``, kept for two leases, so that a
  follower that subscribed just after it was published still finds it. A leader that took
  over dead flights writes its outcome under theirs too: a follower of a dead flight that
  notices the death only after the takeover finished gets that outcome rather than running
  the call a third time.
* channel ``{ns}:sf:c:<token>`` — the outcome again, published when the leader finishes.

Semaphore keys, for a name ``n``:

* ``{n}:m`` hash: ``size``, ``held`` (permits held), ``seq`` (FIFO ticket counter), ``ttl``
  (the longest key lifetime any process asked for), and per token (holders and waiters)
  ``w<token>`` its weight, ``l<token>`` its lease in ms and ``x<token>`` its fence;
* ``{n}:h`` zset: holder token -> lease expiry (server ms);
* ``{n}:q`` zset: waiter token -> ticket (FIFO order); ``{n}:qx`` zset: waiter -> lease expiry;
* ``{n}:e`` the epoch hash (above);
* channel ``{n}:c``: the tokens just granted, space-separated.

Every semaphore script first *purges* (expired holders give their permits back, expired
waiters leave the queue), then *grants* in FIFO order with head-of-line blocking (Go's
``semaphore.Weighted``: a large request at the head is never overtaken), and publishes the
granted tokens. When nothing is held or queued, every key but the epoch is deleted;
otherwise each key's expiry is set to ``ttl`` (three leases) so a semaphore abandoned by
every process disappears (all but its epoch hash: three small fields per name). The
uncontended pair (nobody queued, room enough, a known epoch past its grace) goes through
``SEM_FAST`` / ``SEM_FAST_RELEASE``, the same rules written out in line without the
prelude's closures; they hand every other case to ``SEM_ACQUIRE`` / ``SEM_RELEASE`` before
writing anything (see their comment).
"""

from __future__ import annotations

__all__ = [
    "SEM_ACQUIRE",
    "SEM_FAST",
    "SEM_FAST_RELEASE",
    "SEM_RELEASE",
    "SEM_STATE",
    "SEM_TOUCH",
    "SF_ABANDON",
    "SF_CHECK",
    "SF_FINISH",
    "SF_JOIN",
    "SF_RENEW",
]

#: Reads the epoch hash ``E`` (making a new epoch if it is missing) and mints fences.
#: Defines ``now_us()``, ``t0`` (text), ``fresh`` (a new epoch began in this call) and
#: ``fence()`` (the next fence, as text, written back at once).
EPOCH = """
local now_cache = nil
local function now_us()  -- the server's time in µs, read once per script
  if not now_cache then
    local t = redis.call('TIME')
    now_cache = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now_cache
end
local ep = redis.call('HMGET', E, 't0', 'f', 'g')
local t0, fresh = ep[1], false
local last = tonumber(ep[2] or 0)
if not t0 then
  t0 = string.format('%.0f', now_us())
  last = tonumber(t0)
  fresh = true
  redis.call('HSET', E, 't0', t0, 'f', t0)
end
local function fence()
  local f = math.max(last + 1, now_us())
  last = f
  local s = string.format('%.0f', f)
  redis.call('HSET', E, 'f', s)
  return s
end
"""

# KEYS: lease, epoch, done, result of each flight this caller followed before (whose leaders
# died). ARGV: token, lease_ms.
# -> {1, token, t0, fence} leader | {0, leader's token, t0} | {2, outcome, t0}: a finished
# call's shared outcome (share_for), or a takeover of a flight this caller followed already
# finished (its outcome counts for the dead flight too)
SF_JOIN = (
    "local E = KEYS[2]\n"
    + EPOCH
    + """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, t0} end
for i = 3, #KEYS do
  local out = redis.call('GET', KEYS[i])
  if out then return {2, out, t0} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ARGV[1], t0, fence()}
"""
)

# KEYS: lease. ARGV: token, lease_ms. -> 1 renewed | 0 the lease is not ours any more
SF_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease, result, done, then the results of the dead flights this one took over.
# ARGV: token, outcome, result_ttl_ms, channel, share_ms (0: not kept after the call).
# -> 1 published | 0 the lease was lost (expired, taken over, or Redis lost its state)
SF_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  if i ~= 3 then redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3]) end
end
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[5]) end
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
"""

# KEYS: lease. ARGV: token, channel, abandoned-marker.
# The leader gives up (its callers all left, or fn was cancelled): free the key at once and
# tell the followers, who take over without waiting for the lease to run out.
SF_ABANDON = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# KEYS: lease, result, epoch. ARGV: token, t0.
# -> {2, outcome} | {1} still running | {0} gone: take over | {-1} Redis lost its state
SF_CHECK = """
if redis.call('HGET', KEYS[3], 't0') ~= ARGV[2] then return {-1} end
local out = redis.call('GET', KEYS[2])
if out then return {2, out} end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {1} end
return {0}
"""

#: A semaphore's state and its one grant rule, for a script that has set ``M, H, Q, QX, E``
#: (its keys) and ``my_lease`` (the caller's lease in ms): the semaphore scripts below and
#: the joint ``Limits`` script of ``rate_scripts`` (``LIMITS_ACQUIRE``), which must
#: grant a permit by this rule and no copy of it.
SEM_STATE_LUA = (
    EPOCH
    + """
-- The grant channel is the name's ':c' (KEYS[1] is the name's ':m').
local chan = string.sub(M, 1, -2) .. "c"
if fresh then
  -- A new epoch: whatever else is left of this name belongs to a state that was lost
  -- (partly: a failover) and is void; its holders learn it at their next renewal.
  redis.call('DEL', M, H, Q, QX)
end
local grace = tonumber(ep[3] or 0)
if my_lease > grace then
  grace = my_lease
  redis.call('HSET', E, 'g', grace)
end
local now = 0
local function clock()  -- the server's time in ms (the same reading as now_us)
  if now == 0 then now = math.floor(now_us() / 1000) end
  return now
end
-- Nothing is granted before one full lease has passed since the epoch began.
local function grace_left()
  local left = math.floor(tonumber(t0) / 1000) + grace - clock()
  if left < 0 then return 0 end
  return left
end
local meta = redis.call('HMGET', M, 'size', 'held', 'ttl')
local size = tonumber(meta[1] or 0)
local held = tonumber(meta[2] or 0)
-- Keys live three leases, of the longest lease any process asked for (kept in 'ttl').
local ttl = tonumber(meta[3] or 0)
if 3 * my_lease > ttl then ttl = 3 * my_lease end
local function weight(tok) return tonumber(redis.call('HGET', M, 'w' .. tok) or 0) end
local function forget(tok) redis.call('HDEL', M, 'w' .. tok, 'l' .. tok, 'x' .. tok, 'j' .. tok) end
local function purge()
  clock()
  for _, tok in ipairs(redis.call('ZRANGEBYSCORE', H, '-inf', now)) do
    held = held - weight(tok)
    redis.call('ZREM', H, tok)
    forget(tok)
  end
  for _, tok in ipairs(redis.call('ZRANGEBYSCORE', QX, '-inf', now)) do
    redis.call('ZREM', QX, tok)
    redis.call('ZREM', Q, tok)
    forget(tok)
  end
  if held < 0 then held = 0 end
end
-- A waiter becomes a holder: its lease starts, it gets the next fence. -> the fence
local function hold(tok, wt)
  redis.call('ZREM', Q, tok)
  redis.call('ZREM', QX, tok)
  redis.call('ZADD', H, clock() + tonumber(redis.call('HGET', M, 'l' .. tok) or 0), tok)
  redis.call('HDEL', M, 'j' .. tok)
  local f = fence()
  redis.call('HSET', M, 'x' .. tok, f)
  held = held + wt
  return f
end
-- The grant rule: FIFO, head-of-line (it stops at the first waiter that does not fit), and
-- nothing during an epoch's grace. A waiter of a ``Limits`` (field ``j<token>``: its
-- wake-up list) is granted only together with its rate limits, by its own script call
-- (LIMITS_ACQUIRE, all or nothing): it stops the loop, and when it fits it is told to call
-- back (its list gets an 'h', unless it is ``me``, the caller, or one is already there).
-- -> the Limits waiter at the head that fits now, if any.
local function grant(me)
  if grace_left() > 0 then return nil end
  local granted, fits = {}, nil
  while true do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then break end
    local wt = weight(head)
    if size - held < wt then break end
    local j = redis.call('HGET', M, 'j' .. head)
    if j then
      fits = head
      if head ~= me and redis.call('LLEN', j) == 0 then
        redis.call('RPUSH', j, 'h')
        redis.call('PEXPIRE', j, 3 * my_lease)
      end
      break
    end
    hold(head, wt)
    granted[#granted + 1] = head
  end
  if #granted > 0 then redis.call('PUBLISH', chan, table.concat(granted, ' ')) end
  return fits
end
-- Write back `held` (and any extra fields), refresh every key's expiry; or delete every key
-- (but the epoch) when nothing is held or queued. nq / nh: the queue / holder counts when
-- the caller knows.
local function save(nq, nh, ...)
  nq = nq or redis.call('ZCARD', Q)
  nh = nh or redis.call('ZCARD', H)
  if nq == 0 and nh == 0 then
    redis.call('DEL', M, H, Q, QX)
    return
  end
  redis.call('HSET', M, 'held', held, 'ttl', ttl, ...)
  redis.call('PEXPIRE', M, ttl)
  if nh > 0 then redis.call('PEXPIRE', H, ttl) end
  if nq > 0 then
    redis.call('PEXPIRE', Q, ttl)
    redis.call('PEXPIRE', QX, ttl)
  end
end
"""
)

# Every semaphore script: KEYS m, h, q, qx, e; ARGV[1] the caller's lease in ms.
_SEM_PRELUDE = (
    """
local M, H, Q, QX, E = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local my_lease = tonumber(ARGV[1])
"""
    + SEM_STATE_LUA
)

# ARGV: lease_ms, token, weight, size.
# -> {1, fence, t0} granted | {0, grace_left_ms, t0} queued | {-1, size} the semaphore exists
# with another size
SEM_ACQUIRE = (
    _SEM_PRELUDE
    + """
local tok, wt, want = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if size ~= 0 and size ~= want then
  purge()
  grant()
  save()
  return {-1, size}
end
size = want
-- The fast path (nobody queued, room enough, no grace running) skips the purge: expired
-- holders are only looked for when they could be in the way.
local queued = redis.call('ZCARD', Q)
if queued > 0 then
  purge()
  grant()
  queued = redis.call('ZCARD', Q)
elseif size - held < wt then
  purge()
end
if queued == 0 and size - held >= wt and grace_left() == 0 then
  local f = fence()
  redis.call('ZADD', H, clock() + my_lease, tok)
  held = held + wt
  save(0, nil, 'size', size, 'w' .. tok, wt, 'l' .. tok, my_lease, 'x' .. tok, f)
  return {1, f, t0}
end
redis.call('HSET', M, 'size', size, 'w' .. tok, wt, 'l' .. tok, my_lease)
redis.call('ZADD', Q, redis.call('HINCRBY', M, 'seq', 1), tok)
redis.call('ZADD', QX, clock() + my_lease, tok)
save()
return {0, grace_left(), t0}
"""
)

# ARGV: lease_ms, token... -> {grace_left_ms, t0, then per token: status, fence}: status 1
# holds (lease renewed; its fence), 2 queued (queue lease renewed), 0 unknown (its lease
# expired, or Redis lost its state: a new epoch)
SEM_TOUCH = (
    _SEM_PRELUDE
    + """
purge()
grant()
local out = {grace_left(), t0}
for i = 2, #ARGV do
  local tok = ARGV[i]
  local lease = tonumber(redis.call('HGET', M, 'l' .. tok) or 0)
  clock()
  if redis.call('ZSCORE', H, tok) then
    redis.call('ZADD', H, now + lease, tok)
    out[#out + 1] = 1
    out[#out + 1] = redis.call('HGET', M, 'x' .. tok) or ''
  elseif redis.call('ZSCORE', Q, tok) then
    redis.call('ZADD', QX, now + lease, tok)
    out[#out + 1] = 2
    out[#out + 1] = ''
  else
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
save()
return out
"""
)

# ARGV: lease_ms, token. Release a holder's permits, or withdraw a waiter.
# -> 1 released | 2 withdrawn from the queue | 0 unknown (lease expired / state lost)
SEM_RELEASE = (
    _SEM_PRELUDE
    + """
local tok = ARGV[2]
local r = 0
if redis.call('ZREM', H, tok) == 1 then
  held = held - weight(tok)
  if held < 0 then held = 0 end
  forget(tok)
  r = 1
elseif redis.call('ZREM', Q, tok) == 1 then
  redis.call('ZREM', QX, tok)
  forget(tok)
  r = 2
end
-- Nobody queued: nobody to grant to, and expired holders can wait for a purge.
local nq = redis.call('ZCARD', Q)
if nq > 0 then
  purge()
  grant()
  nq = nil
end
save(nq)
return r
"""
)

# ARGV: lease_ms. -> {size, held, waiting, waiting_weight}
SEM_STATE = (
    _SEM_PRELUDE
    + """
purge()
grant()
local waiting, wsum = 0, 0
for _, tok in ipairs(redis.call('ZRANGE', Q, 0, -1)) do
  waiting = waiting + 1
  wsum = wsum + weight(tok)
end
local out = {size, held, waiting, wsum}
save()
return out
"""
)


# The lean uncontended pair: SEM_ACQUIRE's fast path and SEM_RELEASE's "nobody queued" path
# written out in line, without the prelude. The prelude's nine local functions are closures
# made again at every call, about half of these scripts' server time when the call is the
# common one (see docs/design.md, "The uncontended semaphore pair"). Each lean script either
# does exactly what its original would, or, before writing anything, answers 0: "call the
# original" (a new epoch, a grace running, a lease longer than any asked for in this epoch,
# another size, anyone queued, not enough room, an unknown token). The grant rule itself
# stays in SEM_STATE_LUA: a lean script grants only where that rule grants at once to the
# caller and to nobody else (nobody queued), so there is no second copy of FIFO,
# head-of-line or the grace to drift.
#
# KEYS: m, h, q, e (a Semaphore's keys but ``qx``, which it never touches: ``qx`` holds
# exactly the tokens of ``q``, so with ``q`` empty it is empty too).
# ARGV: lease_ms, token, weight, size.
# -> the fence (an integer: cheaper to parse than an array) | 0 not decided here: call
#    SEM_ACQUIRE
# inline of corral._redis.scripts.SEM_ACQUIRE
SEM_FAST = """
local M, H, E = KEYS[1], KEYS[2], KEYS[4]
local lease, wt, want = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- inline of EPOCH and SEM_STATE_LUA's grace: a known epoch whose grace covers this lease
local ep = redis.call('HMGET', E, 't0', 'f', 'g')
if not ep[1] or lease > tonumber(ep[3] or 0) then return 0 end
-- inline of SEM_ACQUIRE's fast path: nobody queued, room enough (no purge), no grace left
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local meta = redis.call('HMGET', M, 'size', 'held', 'ttl')
local size = tonumber(meta[1] or 0)
if size ~= 0 and size ~= want then return 0 end
local held = tonumber(meta[2] or 0)
if want - held < wt then return 0 end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
if math.floor(tonumber(ep[1]) / 1000) + tonumber(ep[3]) - now > 0 then return 0 end
-- (fence(), hold and save(0, nil, ...))
local f = math.max(tonumber(ep[2] or 0) + 1, now_us)
local fs = string.format('%.0f', f)
redis.call('HSET', E, 'f', fs)
local tok = ARGV[2]
redis.call('ZADD', H, now + lease, tok)
local ttl = tonumber(meta[3] or 0)
if 3 * lease > ttl then ttl = 3 * lease end
redis.call('HSET', M, 'held', held + wt, 'ttl', ttl, 'size', want, 'w' .. tok, wt,
  'l' .. tok, lease, 'x' .. tok, fs)
redis.call('PEXPIRE', M, ttl)
redis.call('PEXPIRE', H, ttl)
return f
"""

# KEYS: m, h, q, e (as SEM_FAST). ARGV: lease_ms, token.
# -> 1 released | 0 not decided here: call SEM_RELEASE (anyone queued, a new epoch, a
#    lease longer than the epoch's grace, or the token is not a holder)
# inline of corral._redis.scripts.SEM_RELEASE
SEM_FAST_RELEASE = """
local M, H = KEYS[1], KEYS[2]
local lease, tok = tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
-- inline of EPOCH and SEM_STATE_LUA's grace: a known epoch whose grace covers this lease
local ep = redis.call('HMGET', KEYS[4], 't0', 'g')
if not ep[1] or lease > tonumber(ep[2] or 0) then return 0 end
-- inline of SEM_RELEASE for a holder, nobody queued (no purge, no grant)
if redis.call('ZREM', H, tok) == 0 then return 0 end
-- The last holder (the common case): every key goes, its fields with it (no HDEL first).
if redis.call('EXISTS', H) == 0 then
  redis.call('DEL', M)
  return 1
end
local meta = redis.call('HMGET', M, 'held', 'ttl', 'w' .. tok)
local held = tonumber(meta[1] or 0) - tonumber(meta[3] or 0)
if held < 0 then held = 0 end
redis.call('HDEL', M, 'w' .. tok, 'l' .. tok, 'x' .. tok, 'j' .. tok)
local ttl = tonumber(meta[2] or 0)
if 3 * lease > ttl then ttl = 3 * lease end
redis.call('HSET', M, 'held', held, 'ttl', ttl)
redis.call('PEXPIRE', M, ttl)
redis.call('PEXPIRE', H, ttl)
return 1
"""
