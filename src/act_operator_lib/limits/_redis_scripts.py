"""The Lua scripts behind the Redis limiters, each run atomically on the server.

Every decision a Redis limiter makes is one of these scripts, timed by the server's
clock (``TIME``), so processes on any number of machines sharing one key agree.
"""

from __future__ import annotations

from typing import Final

# The constants of adaptive mode have one home, the in-process engine. The scripts
# learn at the pause, before the refused calls are refunded, so they apply the
# in-process rule for a window without refunds (`_UNREFUNDED` of what it granted);
# in process the cut is measured again once the pause ends (docs/design.md).
from act_operator_lib.limits._queue import _BLAMED
from act_operator_lib.limits._window import (
    _DECREASE,
    _HOLD_WINDOWS,
    _MINIMUM_SHARE,
    _MOST_DECREASE,
    _RECOVERY_PER_WINDOW,
    _UNREFUNDED,
)

__all__ = [
    "ACQUIRE_SCRIPT",
    "KIND_ERROR",
    "MULTI_RATE_SCRIPT",
    "PAUSE_LEASES_SCRIPT",
    "PAUSE_MULTI_RATE_SCRIPT",
    "PAUSE_RATE_SCRIPT",
    "RATE_SCRIPT",
    "RELEASE_SCRIPT",
    "RENEW_SCRIPT",
    "SETTLE_MULTI_RATE_SCRIPT",
]

KIND_ERROR: Final = "ACTOPLIB_KIND"
"""The prefix of the error reply a script gives for a key owned by something else."""

# Shared by every script: KEYS[1] is the limiter's hash, whose field `kind` says
# which kind of limiter owns the key; any other kind, or another Redis type, is an
# error reply instead of silent corruption. One HMGET reads the hash (`limiter`:
# kind, tat, granted, paused, pstart) and, in the usual case of the right kind, is
# the whole check. `paused` is the server time (us) until which nobody is granted
# (`pause`), `pstart` when that pause began.
_CHECK_KIND: Final = """
local limiter = redis.pcall('HMGET', KEYS[1], 'kind', 'tat', 'granted', 'paused', 'pstart')
local owner = limiter[1]
if owner ~= ARGV[1] then
  local key_type = redis.call('TYPE', KEYS[1])['ok']
  if key_type ~= 'none' then
    if key_type ~= 'hash' then
      return redis.error_reply('ACTOPLIB_KIND a Redis ' .. key_type)
    end
    return redis.error_reply('ACTOPLIB_KIND ' .. (owner and ('a ' .. owner .. ' limiter')
      or 'a hash that is not a limiter'))
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
"""


# Adaptive mode (docs/limits.md, "Adaptive mode"), as `Window` does it in process, on
# the server clock and shared by every process on the key. A rate's learned state is
# three fields of the limiter's hash: `from` (the share of the configured rate
# recovery started from), `plateau` (where recovery holds for a while) and `cut`
# (server time of the last decrease, us); `from:NAME`, ... per rate of a multi-rate
# limiter. The share granted at `now` is a function of those and of the end of the
# latest pause, computed by every script: recovery needs no process to raise the rate
# again, so one that crashed (or all of them) cannot leave the key slowed down, and the
# keys live until the share is back to 1, so an idle key does not forget it early.
# `share_at` recovers, `scaled` gives a share's interval, burst and capacity,
# `decrease` is `Window.decrease`, `learning_for` the us until a share is back to 1,
# `expire_all(us)` sets every key's TTL.
_ADAPTIVE: Final = (
    """
local BLAMED_SHARE = BLAMED
local function share_at(from, plateau, since, per)
  local windows = (now - since) / per
  if windows <= 0 then return from end
  local share = from + RECOVERY * windows
  if plateau > from and share > plateau then
    local beyond = windows - (plateau - from) / RECOVERY - HOLD
    if beyond > 0 then share = plateau + RECOVERY * beyond else share = plateau end
  end
  return math.min(1, share)
end
local function learning_for(a, paused, per)
  if not a or a.share >= 1 then return 0 end
  local windows = (1 - a.from) / RECOVERY
  if a.plateau > a.from then windows = windows + HOLD end
  return math.max(a.cut, paused) + windows * per - now
end
local function expire_all(ttl)
  ttl = math.ceil(ttl / 1000) + 1000
  for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
end
local function round_even(x)
  local whole = math.floor(x)
  local part = x - whole
  if part > 0.5 or (part == 0.5 and whole % 2 == 1) then return whole + 1 end
  return whole
end
local function scaled(limit, share, per, burst, sliding)
  local rate = limit * share
  local bursting = math.max(1, round_even(burst * share))
  local interval = math.ceil(per / rate)
  local capacity = math.max(math.ceil(rate), 1)
  if not sliding then capacity = capacity + bursting - 1 end
  return rate, interval, bursting, capacity
end
local function decrease(a, logged, rate, limit, per, blamed, paused)
  if not blamed or now < paused or now < a.cut + per then
    a.from = a.share
    if a.share >= a.plateau then a.plateau = 0 end
    return
  end
  local learned = UNREFUNDED * logged
  local share = a.share * math.min(math.max(learned / rate, MOST_DECREASE), DECREASE)
  a.from = math.max(share, MINIMUM_SHARE)
  a.plateau = math.min(1, learned / limit)
  a.cut = now
  a.share = a.from
end
""".replace("= BLAMED", f"= {_BLAMED!r}")
    .replace("RECOVERY", repr(_RECOVERY_PER_WINDOW))
    .replace("HOLD", repr(_HOLD_WINDOWS))
    .replace("MOST_DECREASE", repr(_MOST_DECREASE))
    .replace("MINIMUM_SHARE", repr(_MINIMUM_SHARE))
    .replace("DECREASE", repr(_DECREASE))
    .replace("UNREFUNDED", repr(_UNREFUNDED))
)

# The rate limiter's schedule: ARGV[2] is "interval burst capacity per" (us per unit,
# units, ceil(rate) + burst - 1, us), followed by " rate" (the configured rate) in
# adaptive mode. Defines them (scaled to the learned share), `paused`, `learned` (the
# adaptive state, nil without adaptive mode), `save_learned()` and `keep_alive(tat)`
# (both keys live a window past the schedule, and until the learned share is back).
_LEARNED_RATE: Final = """
local interval, burst, capacity, per, limit =
  string.match(ARGV[2], '(%d+) (%d+) (%d+) (%d+) ?(%S*)')
interval, burst, capacity, per = tonumber(interval), tonumber(burst), tonumber(capacity),
  tonumber(per)
local configured_burst = burst
local paused = tonumber(limiter[4]) or 0
local learned = nil
if limit ~= '' then
  limit = tonumber(limit)
  local state = redis.call('HMGET', KEYS[1], 'from', 'plateau', 'cut')
  learned = {from = tonumber(state[1]) or 1, plateau = tonumber(state[2]) or 0,
    cut = tonumber(state[3]) or -math.huge}
  learned.share = share_at(learned.from, learned.plateau, math.max(learned.cut, paused), per)
  if learned.share < 1 then
    local _
    _, interval, burst, capacity = scaled(limit, learned.share, per, burst, false)
  end
end
local function save_learned()
  redis.call('HSET', KEYS[1], 'from', string.format('%.17g', learned.from),
    'plateau', string.format('%.17g', learned.plateau))
  if learned.cut > -math.huge then
    redis.call('HSET', KEYS[1], 'cut', string.format('%.0f', learned.cut))
  end
end
local function keep_alive(tat)
  expire_all(math.max(math.max(tat - now, 0) + per, learning_for(learned, paused, per)))
end
"""

# GCRA with reservation, confirmed against a log of grants. KEYS[1]: hash {kind,
# tat, granted}; KEYS[2]: sorted set of confirmed grants, scored by server time (us),
# each member the count of units granted before it (so units in the window are
# `granted` minus the oldest member). ARGV: kind, the schedule (above: one argument,
# as packing each costs the client microseconds), weight, due (us; -1 to reserve),
# and the server time the caller was told `due` (us; -1 when reserving).
# Reserving moves TAT, the theoretical arrival time of the next unit, and makes the
# caller due at max(now, new_tat - burst * interval). A caller is granted only when
# it is due and the log has room for `weight` more units in the window (now - per,
# now]; the grant is then logged at `now`. Returns `now` when granted (one integer,
# cheaper to parse than an array), else {now, at}: sleep until `at` (server time)
# and call again with due = at. So a caller woken late is counted when it confirms,
# and the window holds at most `capacity` units by confirmation time. In adaptive
# mode the reply is always {now, at, share}, `at` -1 when granted.
RATE_SCRIPT: Final = (
    _CHECK_KIND
    + _ADAPTIVE
    + _LEARNED_RATE
    + """
local weight = tonumber(ARGV[3])
local due = tonumber(ARGV[4])
local tat = tonumber(limiter[2]) or now
local granted = tonumber(limiter[3]) or 0
if due < 0 then
  if tat < now then tat = now end
  tat = tat + weight * interval
  due = tat - burst * interval
end
local told, pstart = tonumber(ARGV[5]), tonumber(limiter[5])
if pstart and told >= 0 and told < pstart then
  -- Told its turn before the latest pause began: the turn moves back by the
  -- pause's length, as TAT did, so the callers waiting keep their order and
  -- spacing after it (those due after its end too).
  due = due + paused - pstart
end
if now < paused and due < paused then due = paused end
local granted_now = false
if due <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - per)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local in_window = oldest[1] and granted - tonumber(oldest[1]) or 0
  if in_window < 0 then
    redis.call('DEL', KEYS[2])
    in_window = 0
  end
  if in_window > math.max(capacity - weight, 0) then
    due = tonumber(oldest[2]) + per
  else
    redis.call('ZADD', KEYS[2], now, string.format('%.0f', granted))
    granted = granted + weight
    granted_now = true
  end
end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'tat', string.format('%.0f', tat),
  'granted', string.format('%.0f', granted))
keep_alive(tat)
if learned then
  if granted_now then due = -1 end
  return {now, due, string.format('%.17g', learned.share)}
end
if granted_now then return now end
return {now, due}
"""
)

# Leases. KEYS: hash {kind}, sorted set of holder ids scored by lease expiry (us),
# wake list. Both keys expire a second after the last lease, so an abandoned key
# cleans itself up; the TTL follows the longest lease, whatever process set it.
_LEASES: Final = """
local function keep_alive()
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local ttl = 1000
  if last[2] then ttl = math.ceil((tonumber(last[2]) - now) / 1000) + 1000 end
  local paused = tonumber(limiter[4]) or 0
  if paused > now then ttl = math.max(ttl, math.ceil((paused - now) / 1000) + 1000) end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
"""

# ARGV: kind, holder id, limit, lease (us). Purges expired leases, then takes a
# permit if fewer than `limit` are held and no pause is on. Returns {1, 0} when
# granted, else {0, us until the pause ends or the earliest lease expires}. Safe to
# run twice (the client resends it when the connection drops, and the first run
# may have reached the server): a holder already in the set is granted again, not
# counted twice or refused.
ACQUIRE_SCRIPT: Final = (
    _CHECK_KIND
    + _LEASES
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local paused = tonumber(limiter[4]) or 0
if redis.call('ZSCORE', KEYS[2], ARGV[2])
  or (now >= paused and redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3])) then
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[4])), ARGV[2])
  redis.call('HSET', KEYS[1], 'kind', ARGV[1])
  keep_alive()
  return {1, 0}
end
if now < paused then return {0, paused - now} end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
"""
)

# ARGV: kind, holder id, lease (us). Extends a lease still held; 0 if it was lost.
RENEW_SCRIPT: Final = (
    _CHECK_KIND
    + _LEASES
    + """
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
keep_alive()
return 1
"""
)

# ARGV: kind, holder id, limit. Drops the lease and, if it was held, pushes one
# wake-up token (the list is capped at `limit`) for a waiter blocked in BLPOP.
RELEASE_SCRIPT: Final = (
    _CHECK_KIND
    + """
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
"""
)

# Pauses. Nobody is granted until `paused` (server time, us); a later pause extends
# a running one, never shortens it. Both return the us the pause has left (in
# adaptive mode {us left, share of each rate...}); in adaptive mode a pause is first
# a refusal that may slow the rates down (`decrease`).
#
# Rate: KEYS as the rate script; ARGV: kind, schedule (as the rate script), pause
# (us). The schedule (TAT) moves back by what this pause adds, and to at least
# `burst - 1` intervals past its end, so reservations taken during the pause
# resume evenly spaced, with no burst.
PAUSE_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + _ADAPTIVE
    + _LEARNED_RATE
    + """
local tat = tonumber(limiter[2]) or now
local ends = now + tonumber(ARGV[3])
if ends <= paused then
  if learned then return {paused - now, string.format('%.17g', learned.share)} end
  return paused - now
end
if learned then
  -- A refusal: slow down below the units of the last window (`Window.decrease`).
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - per)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local logged = 0
  if oldest[1] then logged = math.max((tonumber(limiter[3]) or 0) - tonumber(oldest[1]), 0) end
  decrease(learned, logged, limit * learned.share, limit, per, true, paused)
  local _
  _, interval, burst, capacity = scaled(limit, learned.share, per, configured_burst, false)
  save_learned()
end
local start = now
if paused > now then start = tonumber(limiter[5]) or now end
tat = math.max(math.max(tat, now) + ends - math.max(paused, now), ends + (burst - 1) * interval)
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'tat', string.format('%.0f', tat),
  'paused', string.format('%.0f', ends), 'pstart', string.format('%.0f', start))
paused = ends
keep_alive(tat)
if learned then return {ends - now, string.format('%.17g', learned.share)} end
return ends - now
"""
)

# Concurrency: KEYS[1] the limiter's hash; ARGV: kind, pause (us). Holders keep
# their permits; no new one is granted until the pause ends.
PAUSE_LEASES_SCRIPT: Final = (
    _CHECK_KIND
    + """
local paused = tonumber(limiter[4]) or 0
local ends = now + tonumber(ARGV[2])
if ends <= paused then return paused - now end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'paused', string.format('%.0f', ends))
local keep = math.ceil((ends - now) / 1000) + 1000
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return ends - now
"""
)

# Several rates taken by one grant. KEYS[1]: the limiter's hash {kind, granted,
# paused, pstart, and per rate NAME: tat:NAME, sum:NAME}; then per rate, in the
# order of ARGV[2], a sorted set of grant ids scored by grant time (us) and a hash
# of grant id -> units. One entry per grant and rate, whatever its units, and
# `sum:NAME` the units the set holds: memory follows grants, not units. `granted`
# counts grants and names the next one. ARGV[2]: "1" in adaptive mode (else "0"),
# then per rate "NAME interval tolerance capacity per held limit burst" (us per unit,
# (burst - 1) intervals, ceil(limit), us, us a grant counts: per + margin, the
# configured limit and burst), one after another. Defines `rates` (scaled to their
# learned shares, which `rate.learned` holds in adaptive mode), `fields` (tat:NAME,
# sum:NAME, ... for one HMGET), `rescale(rate)`, `shares()`, `trim(i)` (forget rate
# i's grants older than `held`, returning its sum) and `keep_alive(tats)` (every key
# lives a window past the furthest schedule or pause, and until the shares are back).
_MULTI_RATES: Final = """
local adaptive = string.sub(ARGV[2], 1, 1) == '1'
local rates, fields = {}, {}
for name, interval, tolerance, capacity, per, held, limit, burst in
    string.gmatch(string.sub(ARGV[2], 3), '(%S+) (%d+) (%d+) (%d+) (%d+) (%d+) (%S+) (%d+)') do
  rates[#rates + 1] = {name = name, interval = tonumber(interval),
    tolerance = tonumber(tolerance), capacity = tonumber(capacity), per = tonumber(per),
    held = tonumber(held), limit = tonumber(limit), burst = tonumber(burst)}
  fields[#fields + 1] = 'tat:' .. name
  fields[#fields + 1] = 'sum:' .. name
end
if adaptive then
  for _, rate in ipairs(rates) do
    fields[#fields + 1] = 'from:' .. rate.name
    fields[#fields + 1] = 'plateau:' .. rate.name
    fields[#fields + 1] = 'cut:' .. rate.name
  end
end
local state = redis.call('HMGET', KEYS[1], unpack(fields))
local function rescale(rate)
  local _, interval, bursting, capacity = scaled(rate.limit, rate.learned.share, rate.per,
    rate.burst, true)
  rate.interval, rate.tolerance, rate.capacity = interval, (bursting - 1) * interval, capacity
end
if adaptive then
  for i, rate in ipairs(rates) do
    local at = 2 * #rates + 3 * i
    local a = {from = tonumber(state[at - 2]) or 1, plateau = tonumber(state[at - 1]) or 0,
      cut = tonumber(state[at]) or -math.huge}
    a.share = share_at(a.from, a.plateau, math.max(a.cut, tonumber(limiter[4]) or 0), rate.per)
    rate.learned = a
    if a.share < 1 then rescale(rate) end
  end
end
local function shares()
  local all = {}
  for i, rate in ipairs(rates) do all[i] = string.format('%.17g', rate.learned.share) end
  return all
end
local function trim(i, sum)
  local grants, units = KEYS[2 * i], KEYS[2 * i + 1]
  while true do
    local old = redis.call('ZRANGEBYSCORE', grants, '-inf', now - rates[i].held, 'LIMIT', 0, 500)
    if #old == 0 then break end
    for _, amount in ipairs(redis.call('HMGET', units, unpack(old))) do
      sum = sum - (tonumber(amount) or 0)
    end
    redis.call('ZREM', grants, unpack(old))
    redis.call('HDEL', units, unpack(old))
  end
  if sum < 0 then redis.call('DEL', grants, units) end
  -- A sum above what the log holds (say, its keys deleted by hand) is mended by
  -- the window check when the window looks full.
  return math.max(sum, 0)
end
local function keep_alive(tats)
  local paused = tonumber(limiter[4]) or 0
  local ttl = math.max(paused - now, 0)
  for i, rate in ipairs(rates) do
    ttl = math.max(ttl, math.max(tats[i] - now, 0) + rate.held,
      learning_for(rate.learned, paused, rate.per))
  end
  expire_all(ttl)
end
"""

# Reserve, then confirm: as the rate script, for every rate at once. ARGV: kind,
# rates, costs ("c1 c2 ..." in the order of the rates), due (us; -1 to reserve),
# and the server time the caller was told `due` (us; -1 when reserving).
# Reserving makes the caller due when every rate's schedule allows it (TAT minus
# the burst tolerance) and moves each rate's TAT past the grant by its cost. A
# due caller is granted only if every rate's window (now - held, now] has room
# for its cost, and then from all of them at once; otherwise it is told when
# the last of those windows will have room. Returns {1, now, grant id} when
# granted, else {0, now, at}: sleep until `at` (server time), call again with
# due = at; in adaptive mode followed by each rate's share.
MULTI_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + _ADAPTIVE
    + _MULTI_RATES
    + """
local costs = {}
for cost in string.gmatch(ARGV[3], '%d+') do costs[#costs + 1] = tonumber(cost) end
local due = tonumber(ARGV[4])
local tats, sums = {}, {}
for i = 1, #rates do
  tats[i] = tonumber(state[2 * i - 1]) or now
  sums[i] = tonumber(state[2 * i]) or 0
end
if due < 0 then
  due = now
  for i, rate in ipairs(rates) do due = math.max(due, tats[i] - rate.tolerance) end
  for i, rate in ipairs(rates) do
    tats[i] = math.max(tats[i], due) + costs[i] * rate.interval
  end
end
local paused = tonumber(limiter[4]) or 0
local told, pstart = tonumber(ARGV[5]), tonumber(limiter[5])
if pstart and told >= 0 and told < pstart then
  -- Told its turn before the latest pause began: the turn moves back by the
  -- pause's length, as the schedules did, so waiters keep order and spacing.
  due = due + paused - pstart
end
if now < paused and due < paused then due = paused end
local id = nil
if due <= now then
  for i, rate in ipairs(rates) do
    sums[i] = trim(i, sums[i])
    local keep = math.max(rate.capacity - costs[i], 0)
    -- The oldest grants must leave the window until at most `keep` units remain;
    -- a second pass if the sum had drifted above what the log holds.
    local pass = 1
    while sums[i] > keep and pass <= 2 do
      local remaining, first = sums[i], 0
      local leaves = nil
      while not leaves do
        local oldest = redis.call('ZRANGE', KEYS[2 * i], first, first + 99, 'WITHSCORES')
        if #oldest == 0 then break end
        local ids = {}
        for j = 1, #oldest, 2 do ids[#ids + 1] = oldest[j] end
        local amounts = redis.call('HMGET', KEYS[2 * i + 1], unpack(ids))
        for j, amount in ipairs(amounts) do
          remaining = remaining - (tonumber(amount) or 0)
          if remaining <= keep then
            leaves = tonumber(oldest[2 * j]) + rate.held
            break
          end
        end
        first = first + 100
      end
      if leaves then
        due = math.max(due, leaves)
        break
      end
      sums[i] = sums[i] - remaining
      pass = pass + 1
    end
  end
  if due <= now then
    id = (tonumber(limiter[3]) or 0) + 1
    for i, cost in ipairs(costs) do
      if cost > 0 then
        redis.call('ZADD', KEYS[2 * i], now, id)
        redis.call('HSET', KEYS[2 * i + 1], id, cost)
        sums[i] = sums[i] + cost
      end
    end
  end
end
local update = {'kind', ARGV[1]}
if id then update[3], update[4] = 'granted', string.format('%.0f', id) end
for i, rate in ipairs(rates) do
  update[#update + 1] = 'tat:' .. rate.name
  update[#update + 1] = string.format('%.0f', tats[i])
  update[#update + 1] = 'sum:' .. rate.name
  update[#update + 1] = string.format('%.0f', sums[i])
end
redis.call('HSET', KEYS[1], unpack(update))
keep_alive(tats)
local reply = {0, now, due}
if id then reply = {1, now, id} end
if adaptive then
  for _, share in ipairs(shares()) do reply[#reply + 1] = share end
end
return reply
"""
)

# Settle a grant: ARGV: kind, rates, grant id, grant time (us), estimates, actual
# costs ("c1 c2 ..."). Each rate's grant entry, while still in its window, is set
# to the actual units (the sum follows), and the rate's TAT moves by the
# difference: a refund lets later grants go sooner, an extra charge holds them
# back. The difference is taken from the units stored, when there are any, so
# the script run twice (a resend after a dropped connection) charges once; only
# for a grant already out of its window would a second run move the TAT again.
SETTLE_MULTI_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + _ADAPTIVE
    + _MULTI_RATES
    + """
local id, at = ARGV[3], tonumber(ARGV[4])
local estimates, actual = {}, {}
for cost in string.gmatch(ARGV[5], '%d+') do estimates[#estimates + 1] = tonumber(cost) end
for cost in string.gmatch(ARGV[6], '%d+') do actual[#actual + 1] = tonumber(cost) end
local update, tats = {'kind', ARGV[1]}, {}
for i, rate in ipairs(rates) do
  tats[i] = tonumber(state[2 * i - 1]) or now
  local difference = actual[i] - estimates[i]
  if difference ~= 0 and at > now - rate.held then
    local sum = trim(i, tonumber(state[2 * i]) or 0)
    local stored = tonumber(redis.call('HGET', KEYS[2 * i + 1], id))
    if stored then difference = actual[i] - stored end
    if actual[i] > 0 then
      redis.call('ZADD', KEYS[2 * i], at, id)
      redis.call('HSET', KEYS[2 * i + 1], id, actual[i])
    else
      redis.call('ZREM', KEYS[2 * i], id)
      redis.call('HDEL', KEYS[2 * i + 1], id)
    end
    update[#update + 1] = 'sum:' .. rate.name
    update[#update + 1] = string.format('%.0f', math.max(sum + difference, 0))
  end
  tats[i] = tats[i] + difference * rate.interval
  update[#update + 1] = 'tat:' .. rate.name
  update[#update + 1] = string.format('%.0f', tats[i])
end
redis.call('HSET', KEYS[1], unpack(update))
keep_alive(tats)
return 1
"""
)

# Pause a multi-rate limiter: ARGV: kind, rates, pause (us). Each rate's schedule
# moves to the end of the pause at most, never by the pause's length on top of the
# grants already reserved: a `Rate` is a sliding window whose log never holds more
# than its limit, so its burst comes back when the pause ends (`Window.pause`); the
# rate script holds every grant back to `paused`. In adaptive mode the refusal is
# blamed on the fullest rates only, as in process.
PAUSE_MULTI_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + _ADAPTIVE
    + _MULTI_RATES
    + """
local paused = tonumber(limiter[4]) or 0
local ends = now + tonumber(ARGV[3])
if ends <= paused then
  if adaptive then return {paused - now, unpack(shares())} end
  return paused - now
end
local start = now
if paused > now then start = tonumber(limiter[5]) or now end
local update, tats = {'kind', ARGV[1], 'paused', string.format('%.0f', ends),
  'pstart', string.format('%.0f', start)}, {}
if adaptive then
  -- A refusal, blamed on the fullest rates relative to their learned rates (and
  -- those nearly as full), as `GrantQueue.pause` does in process.
  local logged, used, fullest = {}, {}, 0
  for i, rate in ipairs(rates) do
    logged[i] = trim(i, tonumber(state[2 * i]) or 0)
    used[i] = logged[i] / (rate.limit * rate.learned.share)
    fullest = math.max(fullest, used[i])
  end
  for i, rate in ipairs(rates) do
    local a = rate.learned
    decrease(a, logged[i], rate.limit * a.share, rate.limit, rate.per,
      used[i] >= BLAMED_SHARE * fullest, paused)
    if a.share < 1 then rescale(rate) end
    update[#update + 1] = 'sum:' .. rate.name
    update[#update + 1] = string.format('%.0f', logged[i])
    update[#update + 1] = 'from:' .. rate.name
    update[#update + 1] = string.format('%.17g', a.from)
    update[#update + 1] = 'plateau:' .. rate.name
    update[#update + 1] = string.format('%.17g', a.plateau)
    if a.cut > -math.huge then
      update[#update + 1] = 'cut:' .. rate.name
      update[#update + 1] = string.format('%.0f', a.cut)
    end
  end
end
for i, rate in ipairs(rates) do
  tats[i] = math.max(tonumber(state[2 * i - 1]) or now, ends)
  update[#update + 1] = 'tat:' .. rate.name
  update[#update + 1] = string.format('%.0f', tats[i])
end
redis.call('HSET', KEYS[1], unpack(update))
limiter[4] = ends
keep_alive(tats)
if adaptive then return {ends - now, unpack(shares())} end
return ends - now
"""
)
