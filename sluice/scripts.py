"""Lua scripts that make each job state change one atomic Redis round trip.

Why Lua: the event id must be assigned, the event stored and published, and the job's
status checked (a cancelled job takes no more events; a superseded attempt cannot write)
in one step, or a concurrent cancel, a reaper or a duplicate worker could interleave.

Every script touches one hash slot: a job's own keys share one hash tag, and the lease
index (a sorted set of running jobs by lease expiry) and the queued index (queued jobs by
the time their message was sent) it touches are its bucket's, under the same tag, in the
sharded layout of a Redis Cluster (``sluice.keys``); on one Redis they are one key each.
On a cluster the scripts publish with SPUBLISH (sharded pub/sub: the message stays on the
channel's shard) instead of PUBLISH: ``sharded`` makes that variant.
"""

from __future__ import annotations

# Shared tail of APPEND and REAP: end the job (status, finished time, TTLs, indexes, key).
_END_JOB = """
local function end_job(job, events, leases, queued, job_id, status, now, ttl)
  redis.call('HSET', job, 'status', status, 'finished_at', now)
  redis.call('HDEL', job, 'upstream_key')
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', events, ttl)
  redis.call('ZREM', leases, job_id)
  redis.call('ZREM', queued, job_id)
end
local function push(events, channel, job, entries, max_age)
  local n = redis.call('RPUSH', events, unpack(entries))
  if n == #entries then redis.call('EXPIRE', events, max_age) end
  local lines = {}
  for i = 1, #entries do lines[i] = (n - #entries + i) .. ' ' .. entries[i] end
  -- a job with a replicated watermark is published by COMMIT, once replicas have it
  if redis.call('HEXISTS', job, 'replicated') == 0 then
    redis.call('PUBLISH', channel, table.concat(lines, '\\n'))
  end
  redis.call('HSET', job, 'last_event_id', n)
  return n
end
"""

# KEYS: job hash, event log, live channel, lease index, queued index
# ARGV: job id, attempt fence ('' = any), expected last event id ('' = any),
#       new status ('' = keep), now, ttl (>0: the last entry ends the job with status
#       ARGV[4]), max job age, number of entries k, k entries, then field/value pairs.
# A writer with an attempt fence must own the running job: a job put back in the queue
# by the reaper, claimed by a newer attempt, or handed back by its worker (RELEASE)
# refuses the old attempt's events.
# With an expected last id, a batch that is already in the log (a call retried after its
# reply was lost) returns its last id again instead of being written twice.
# Returns the id of the last appended event, or a negative code:
#   -1 no such job, -2 job already ended, -3 attempt superseded, -4 out of sequence.
APPEND = (
    _END_JOB
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return -2 end
if ARGV[2] ~= '' then
  if status ~= 'running' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then
    return -3
  end
  -- handed back (RELEASE): the attempt is over even before a reaper restarts the job
  if redis.call('HEXISTS', KEYS[1], 'release_reason') == 1 then return -3 end
end
local k = tonumber(ARGV[8])
if ARGV[3] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_event_id') or '0')
  if last == tonumber(ARGV[3]) + k then return last end
  if last ~= tonumber(ARGV[3]) then return -4 end
end
local n = push(KEYS[2], KEYS[3], KEYS[1], {unpack(ARGV, 9, 8 + k)}, tonumber(ARGV[7]))
for i = 9 + k, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if tonumber(ARGV[6]) > 0 then
  end_job(KEYS[1], KEYS[2], KEYS[4], KEYS[5], ARGV[1], ARGV[4], ARGV[5], tonumber(ARGV[6]))
elseif ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[4])
end
return n
"""
)

# KEYS: job hash, lease index, event log, live channel, queued index
# ARGV: job id, now, lease expiry, max job age
# Moves a queued job to running, takes its lease, appends and publishes the `started`
# event, and returns the job's hash (field/value pairs), so a worker starts a job in one
# round trip. Returns nil when the job is not queued (running elsewhere, ended, or gone),
# so a duplicate delivery of the Celery message cannot start a second stream.
CLAIM = (
    _END_JOB
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return false end
redis.call('ZREM', KEYS[5], ARGV[1])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'lease_until', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local model = redis.call('HGET', KEYS[1], 'model') or ''
local started = 'started ' .. cjson.encode({model = model, attempt = attempt})
push(KEYS[3], KEYS[4], KEYS[1], {started}, tonumber(ARGV[4]))
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: job hash, lease index.  ARGV: job id, attempt, lease expiry.
# Extends the lease of a job this attempt still owns; returns 1, or 0 if it lost the job
# (cancelled, ended, reaped, taken over by a newer attempt, or handed back: a renewal
# racing the hand-back must not push the restart back by a whole lease).
RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'release_reason') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""

# KEYS: job hash, lease index.  ARGV: job id, attempt, reason.
# A worker shutting down gives its job back: its lease ends now (with the reason for the
# `reset` event), the attempt's later writes and renewals are refused, and any live
# worker's reaper restarts the job within seconds.
RELEASE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', 0, 'release_reason', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: job hash, event log, live channel, lease index, queued index
# ARGV: job id, now, max attempts, finished-job ttl, max job age, the worker_lost error entry
# For a running job whose lease expired (its worker died): below the attempt limit, append
# a `reset` event and put the job back in the queue (returns the next attempt number, for
# the caller to enqueue it); at the limit, fail it with worker_lost (returns -1). Returns 0
# when there is nothing to do (the lease was renewed meanwhile, or the job is not running).
REAP = (
    _END_JOB
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if lease > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[4], lease, ARGV[1])
  return 0
end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if attempt >= tonumber(ARGV[3]) and not redis.call('HGET', KEYS[1], 'release_reason') then
  push(KEYS[2], KEYS[3], KEYS[1], {ARGV[6]}, tonumber(ARGV[5]))
  end_job(KEYS[1], KEYS[2], KEYS[4], KEYS[5], ARGV[1], 'failed', ARGV[2], tonumber(ARGV[4]))
  return -1
end
local reason = redis.call('HGET', KEYS[1], 'release_reason') or 'worker_lost'
local reset = 'reset {"reason":"' .. reason .. '","attempt":' .. (attempt + 1) .. '}'
push(KEYS[2], KEYS[3], KEYS[1], {reset}, tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'release_reason')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return attempt + 1
"""
)

# KEYS: job hash, queued index, the Idempotency-Key's key ('' or absent = none; on a
#       cluster it is in another slot: absent, and DELETE_IF follows)
# ARGV: job id
# Takes back a job whose message could not be sent (the broker was down): deletes it, its
# index entry and the idempotency key that names it, so a retry starts afresh. Only a job
# no worker has touched (queued, attempt 0); returns 1 if it was withdrawn.
WITHDRAW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= '0' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if KEYS[3] and KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return 1
"""

# KEYS: a key.  ARGV: a value.
# Deletes the key if it holds the value (on a cluster, WITHDRAW cannot reach a job's
# Idempotency-Key, which lives in another slot: this follows it).
DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: a conversation's latest-job key
# ARGV: the job id the caller saw there ('' = none), the new job id, ttl
# Compare and set, so that of two submits to one conversation that both saw its last job
# ended, only one becomes its job (the other is refused: ``ConversationBusy``).
POINT_CONVERSATION = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


_PUBLISH = "redis.call('PUBLISH',"


def sharded(script: str) -> str:
    """The script for a Redis Cluster: its live messages go out with SPUBLISH, which a
    gateway's SSUBSCRIBE to the channel's shard receives (the script cannot tell which
    deployment it runs in; one Redis keeps PUBLISH, and the scripts' hashes, as before)."""
    if _PUBLISH not in script:
        return script
    return script.replace(_PUBLISH, "redis.call('SPUBLISH',")


# KEYS: job hash, event log, live channel.  ARGV: up to (an event id), attempt ('' = any)
# For a job with a replicated watermark (sluice.replication): after a WAIT confirmed that
# the replicas have the log up to ARGV[1], raise the watermark there (never past the log's
# end, never back) and publish the events it passes. An attempt fence skips a job another
# attempt has taken over (its events were not covered by this writer's WAIT). Returns
# the watermark, or -1 for a job without one (or gone).
COMMIT = """
local mark = redis.call('HGET', KEYS[1], 'replicated')
if not mark then return -1 end
mark = tonumber(mark)
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return mark end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_event_id') or '0')
local upto = math.min(tonumber(ARGV[1]), last)
if upto <= mark then return mark end
local entries = redis.call('LRANGE', KEYS[2], mark, upto - 1)
local lines = {}
for i = 1, #entries do lines[i] = (mark + i) .. ' ' .. entries[i] end
if #lines > 0 then redis.call('PUBLISH', KEYS[3], table.concat(lines, '\\n')) end
redis.call('HSET', KEYS[1], 'replicated', upto)
return upto
"""
