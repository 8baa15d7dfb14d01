"""The Lua scripts behind the Redis limiters, each run atomically on the server.

Every decision a Redis limiter makes is one of these scripts, timed by the server's
clock (``TIME``), so processes on any number of machines sharing one key agree.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACQUIRE_SCRIPT",
    "KIND_ERROR",
    "PAUSE_LEASES_SCRIPT",
    "PAUSE_RATE_SCRIPT",
    "RATE_SCRIPT",
    "RELEASE_SCRIPT",
    "RENEW_SCRIPT",
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

# GCRA with reservation, confirmed against a log of grants. KEYS[1]: hash {kind,
# tat, granted}; KEYS[2]: sorted set of confirmed grants, scored by server time (us),
# each member the count of units granted before it (so units in the window are
# `granted` minus the oldest member). ARGV: kind, "interval burst capacity per"
# (us per unit, units, ceil(rate) + burst - 1, us: one argument, as packing each
# costs the client microseconds), weight, due (us; -1 to reserve).
# Reserving moves TAT, the theoretical arrival time of the next unit, and makes the
# caller due at max(now, new_tat - burst * interval). A caller is granted only when
# it is due and the log has room for `weight` more units in the window (now - per,
# now]; the grant is then logged at `now`. Returns `now` when granted (one integer,
# cheaper to parse than an array), else {now, at}: sleep until `at` (server time)
# and call again with due = at. So a
# caller woken late is counted when it confirms, and the window holds at most
# `capacity` units by confirmation time.
RATE_SCRIPT: Final = (
    _CHECK_KIND
    + """
local interval, burst, capacity, per = string.match(ARGV[2], '(%d+) (%d+) (%d+) (%d+)')
interval, per = tonumber(interval), tonumber(per)
local weight = tonumber(ARGV[3])
local due = tonumber(ARGV[4])
local tat = tonumber(limiter[2]) or now
local granted = tonumber(limiter[3]) or 0
if due < 0 then
  if tat < now then tat = now end
  tat = tat + weight * interval
  due = tat - tonumber(burst) * interval
end
local paused = tonumber(limiter[4]) or 0
if now < paused and due < paused then
  -- Reserved before a pause: moved back by the pause's length, so the callers
  -- waiting keep their order and spacing after it.
  due = math.max(due + paused - (tonumber(limiter[5]) or now), paused)
end
local granted_now = false
if due <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - per)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local in_window = oldest[1] and granted - tonumber(oldest[1]) or 0
  if in_window < 0 then
    redis.call('DEL', KEYS[2])
    in_window = 0
  end
  if in_window + weight > tonumber(capacity) then
    due = tonumber(oldest[2]) + per
  else
    redis.call('ZADD', KEYS[2], now, string.format('%.0f', granted))
    granted = granted + weight
    granted_now = true
  end
end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'tat', string.format('%.0f', tat),
  'granted', string.format('%.0f', granted))
local ttl = math.ceil((math.max(tat - now, 0) + per) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
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
# a running one, never shortens it. Both return the us the pause has left.
#
# Rate: KEYS as the rate script; ARGV: kind, schedule (as the rate script), pause
# (us). The schedule (TAT) moves back by what this pause adds, and to at least
# `burst - 1` intervals past its end, so reservations taken during the pause
# resume evenly spaced, with no burst.
PAUSE_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + """
local interval, burst, capacity, per = string.match(ARGV[2], '(%d+) (%d+) (%d+) (%d+)')
interval, burst, per = tonumber(interval), tonumber(burst), tonumber(per)
local tat = tonumber(limiter[2]) or now
local paused = tonumber(limiter[4]) or 0
local ends = now + tonumber(ARGV[3])
if ends <= paused then return paused - now end
local start = now
if paused > now then start = tonumber(limiter[5]) or now end
tat = math.max(math.max(tat, now) + ends - math.max(paused, now), ends + (burst - 1) * interval)
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'tat', string.format('%.0f', tat),
  'paused', string.format('%.0f', ends), 'pstart', string.format('%.0f', start))
local ttl = math.ceil((tat - now + per) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
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
