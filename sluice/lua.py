"""Lua scripts that make each job state change one atomic Redis round trip.

Why Lua: the event id must be assigned, the event stored and published, and the job's
status checked (a cancelled job takes no more events; a superseded attempt cannot write)
in one step, or a concurrent cancel or a duplicate worker could interleave with it.
All keys of a job share one hash tag, so the scripts also run on Redis Cluster.
"""

from __future__ import annotations

# KEYS: job hash, event log, live channel
# ARGV: attempt fence ('' = any), new status ('' = keep), now, ttl (>0 ends the job),
#       max job age, number of entries k, k entries, then field/value pairs for the hash.
# A terminal append also deletes the job's sealed upstream key: it is no longer needed.
# Returns the id of the last appended event, or a negative code:
#   -1 no such job, -2 job already ended, -3 attempt superseded.
APPEND = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return -2 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return -3 end
local k = tonumber(ARGV[6])
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 7, 6 + k))
if n == k then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5])) end
local lines = {}
for i = 1, k do lines[i] = (n - k + i) .. ' ' .. ARGV[6 + i] end
redis.call('PUBLISH', KEYS[3], table.concat(lines, '\\n'))
redis.call('HSET', KEYS[1], 'last_event_id', n)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'status', ARGV[2]) end
for i = 7 + k, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[3])
  redis.call('HDEL', KEYS[1], 'upstream_key')
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return n
"""

# KEYS: job hash.  ARGV: now.
# Moves a queued job to running and returns its new attempt number; returns 0 when the job
# is not queued (already running elsewhere, ended, or gone), so a duplicate delivery of the
# Celery message cannot start a second stream.
CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
return attempt
"""
