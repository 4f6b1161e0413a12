#!lua name=portvakt_1
-- Portvakt's functions, loaded with FUNCTION LOAD REPLACE by every node that starts.
-- They only store and compare: every rule stays in the nodes (docs/design.md).

-- Replaces a record if its version is still the one the caller read.
-- KEYS[1] the record (a hash: v = version, b = bytes)
-- ARGV[1] expected version ('' = no record), ARGV[2] new version ('' = remove),
-- ARGV[3] bytes, ARGV[4] time to live in ms ('0' = keep)
-- Returns 1, or the record as it is: {version, bytes}, or {} if there is none.
local function swap(keys, args)
  local now = redis.call('HMGET', keys[1], 'v', 'b')
  local current = now[1]
  if current == false then current = '' end
  if current ~= args[1] then
    if now[1] == false then return {} end
    return {now[1], now[2]}
  end
  if args[2] == '' then
    redis.call('DEL', keys[1])
    return 1
  end
  redis.call('HSET', keys[1], 'v', args[2], 'b', args[3])
  if args[4] == '0' then
    redis.call('PERSIST', keys[1])
  else
    redis.call('PEXPIRE', keys[1], args[4])
  end
  return 1
end

-- Appends a batch of directory changes if the caller has seen every earlier one.
-- KEYS[1] the head (last position), KEYS[2] the log (a stream, ids '<position>-0')
-- ARGV[1] the position the caller's directory is at, ARGV[2] the caller's node id,
-- ARGV[3] the sealed batch
-- Returns {1, position} or {0, head}.
local function append(keys, args)
  local head = tonumber(redis.call('GET', keys[1]) or '0')
  if head ~= tonumber(args[1]) then return {0, head} end
  head = head + 1
  redis.call('XADD', keys[2], head .. '-0', 'o', args[2], 'b', args[3])
  redis.call('SET', keys[1], head)
  return {1, head}
end

-- Keeps a snapshot of the directory at a position, if it is newer than the one kept,
-- and trims the log before a position (entries the newest snapshot covers, less a
-- margin for nodes that are still reading them).
-- KEYS[1] the snapshot (a hash: p = position, b = sealed bytes), KEYS[2] the log
-- ARGV[1] position, ARGV[2] bytes, ARGV[3] first position to keep in the log
local function snapshot(keys, args)
  local kept = tonumber(redis.call('HGET', keys[1], 'p') or '0')
  if tonumber(args[1]) <= kept then return 0 end
  redis.call('HSET', keys[1], 'p', args[1], 'b', args[2])
  redis.call('XTRIM', keys[2], 'MINID', args[3] .. '-0')
  return 1
end

-- Raises a number kept as a string (the replay fence) and returns it.
-- KEYS[1] the key, ARGV[1] the value
local function raise(keys, args)
  local now = tonumber(redis.call('GET', keys[1]) or '0')
  local want = tonumber(args[1])
  if want > now then
    redis.call('SET', keys[1], args[1])
    return want
  end
  return now
end

redis.register_function('portvakt_swap', swap)
redis.register_function('portvakt_append', append)
redis.register_function('portvakt_snapshot', snapshot)
redis.register_function('portvakt_raise', raise)
