"""The Lua scripts behind ``corral.redis`` (both flavours run the same text).

Every state change of a shared SingleFlight or Semaphore is one script: Redis runs a script
atomically, so no interleaving of processes is ever observable, and a script is one round
trip. Times come from the server's clock (``TIME``), never from the callers' clocks, which
may disagree across hosts.

SingleFlight keys, for a namespace ``ns`` and a key ``k``:

* ``ns:sf:epoch`` — a random id made once per namespace and never expired. A Redis that
  restarted without persistence has lost it: a follower that sees the epoch change knows
  the state it relied on is gone (an error), instead of mistaking it for a dead leader (a
  takeover, which would run the call a second time).
* ``ns:sf:k:lease`` — the leader's token, with the lease as its expiry (``SET NX PX``).
* ``ns:sf:r:<token>`` — the outcome of the flight ``token``, kept for two leases, so that a
  follower that subscribed just after it was published still finds it. A leader that took
  over dead flights writes its outcome under theirs too: a follower of a dead flight that
  notices the death only after the takeover finished gets that outcome rather than running
  the call a third time.
* channel ``ns:sf:c:<token>`` — the outcome again, published when the leader finishes.

Semaphore keys, for a name ``n`` (hash tag-free: one Redis, not a cluster):

* ``n:m`` hash: ``size``, ``held`` (permits held), ``seq`` (FIFO ticket counter), ``ttl``
  (the longest key lifetime any process asked for), and per token (holders and waiters)
  ``w<token>`` its weight and ``l<token>`` its lease in ms;
* ``n:h`` zset: holder token -> lease expiry (server ms);
* ``n:q`` zset: waiter token -> ticket (FIFO order); ``n:qx`` zset: waiter -> lease expiry;
* channel ``n:c``: the tokens just granted, space-separated.

Every semaphore script first *purges* (expired holders give their permits back, expired
waiters leave the queue), then *grants* in FIFO order with head-of-line blocking (Go's
``semaphore.Weighted``: a large request at the head is never overtaken), and publishes the
granted tokens. When nothing is held or queued, every key is deleted; otherwise each key's
expiry is set to ``ttl`` (three leases) so a semaphore abandoned by every process disappears.
"""

from __future__ import annotations

__all__ = [
    "SEM_ACQUIRE",
    "SEM_RELEASE",
    "SEM_STATE",
    "SEM_TOUCH",
    "SF_ABANDON",
    "SF_CHECK",
    "SF_FINISH",
    "SF_JOIN",
    "SF_RENEW",
]

# KEYS: lease, epoch, result of each flight this caller followed before (whose leaders died).
# ARGV: token, lease_ms, new epoch.
# -> {1, token, epoch} leader | {0, leader's token, epoch} | {2, outcome, epoch}: a takeover of
# a flight this caller followed already finished (its outcome counts for the dead flight too)
SF_JOIN = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur, epoch} end
for i = 3, #KEYS do
  local out = redis.call('GET', KEYS[i])
  if out then return {2, out, epoch} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, ARGV[1], epoch}
"""

# KEYS: lease. ARGV: token, lease_ms. -> 1 renewed | 0 the lease is not ours any more
SF_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease, result, then the results of the dead flights this one took over.
# ARGV: token, outcome, result_ttl_ms, channel.
# -> 1 published | 0 the lease was lost (expired, taken over, or Redis lost its state)
SF_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
end
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

# KEYS: lease, result, epoch. ARGV: token, epoch.
# -> {2, outcome} | {1} still running | {0} gone: take over | {-1} Redis lost its state
SF_CHECK = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return {-1} end
local out = redis.call('GET', KEYS[2])
if out then return {2, out} end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {1} end
return {0}
"""

_SEM_PRELUDE = """
local M, H, Q, QX = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- The grant channel is the name's ':c' (KEYS[1] is the name's ':m').
local chan = string.sub(M, 1, -2) .. "c"
local now = 0
local function clock()  -- the server's time in ms, read once and only when needed
  if now == 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local meta = redis.call('HMGET', M, 'size', 'held', 'ttl')
local size = tonumber(meta[1] or 0)
local held = tonumber(meta[2] or 0)
-- Keys live three leases, of the longest lease any process asked for (kept in 'ttl').
local ttl = tonumber(meta[3] or 0)
local function weight(tok) return tonumber(redis.call('HGET', M, 'w' .. tok) or 0) end
local function forget(tok) redis.call('HDEL', M, 'w' .. tok, 'l' .. tok) end
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
local function grant()
  clock()
  local granted = {}
  while true do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then break end
    local wt = weight(head)
    if size - held < wt then break end
    redis.call('ZREM', Q, head)
    redis.call('ZREM', QX, head)
    redis.call('ZADD', H, now + tonumber(redis.call('HGET', M, 'l' .. head) or 0), head)
    held = held + wt
    granted[#granted + 1] = head
  end
  if #granted > 0 then redis.call('PUBLISH', chan, table.concat(granted, ' ')) end
end
-- Write back `held` (and any extra fields), refresh every key's expiry; or delete every key
-- when nothing is held or queued. nq / nh: the queue / holder counts when the caller knows.
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

# ARGV: token, weight, size, lease_ms.
# -> {1} granted | {0} queued | {-1, size} the semaphore exists with another size
SEM_ACQUIRE = (
    _SEM_PRELUDE
    + """
local tok, wt, want, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if 3 * lease > ttl then ttl = 3 * lease end
if size ~= 0 and size ~= want then
  purge()
  grant()
  save()
  return {-1, size}
end
size = want
-- The fast path (nobody queued, room enough) skips the purge: expired holders are only
-- looked for when they could be in the way.
local queued = redis.call('ZCARD', Q)
if queued > 0 then
  purge()
  grant()
  queued = redis.call('ZCARD', Q)
elseif size - held < wt then
  purge()
end
if queued == 0 and size - held >= wt then
  redis.call('ZADD', H, clock() + lease, tok)
  held = held + wt
  save(0, nil, 'size', size, 'w' .. tok, wt, 'l' .. tok, lease)
  return {1}
end
redis.call('HSET', M, 'size', size, 'w' .. tok, wt, 'l' .. tok, lease)
redis.call('ZADD', Q, redis.call('HINCRBY', M, 'seq', 1), tok)
redis.call('ZADD', QX, clock() + lease, tok)
save()
return {0}
"""
)

# ARGV: token... -> per token: 1 holds (lease renewed), 2 queued (queue lease
# renewed), 0 unknown (its lease expired, or Redis lost its state)
SEM_TOUCH = (
    _SEM_PRELUDE
    + """
purge()
grant()
local out = {}
for i = 1, #ARGV do
  local tok = ARGV[i]
  local lease = tonumber(redis.call('HGET', M, 'l' .. tok) or 0)
  clock()
  if redis.call('ZSCORE', H, tok) then
    redis.call('ZADD', H, now + lease, tok)
    out[#out + 1] = 1
  elseif redis.call('ZSCORE', Q, tok) then
    redis.call('ZADD', QX, now + lease, tok)
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
save()
return out
"""
)

# ARGV: token. Release a holder's permits, or withdraw a waiter.
# -> 1 released | 2 withdrawn from the queue | 0 unknown (lease expired / state lost)
SEM_RELEASE = (
    _SEM_PRELUDE
    + """
local tok = ARGV[1]
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

# No ARGV. -> {size, held, waiting, waiting_weight}
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
