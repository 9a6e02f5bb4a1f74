"""The update script's Lua source: the windows of every scored row, server-side.

Rendered and registered by :mod:`service.history.scripts` (spans filled in from
:mod:`fraud_contract.windows`, layouts documented there). ``COMMON`` holds the helpers every
script starts with.
"""

from __future__ import annotations

from typing import Final

#: Lua helpers shared by the scripts: unpack a whole history blob in chunks, read one bit.
COMMON: Final = r"""
local CHUNK = 2000
local fmt_cache = {}
local function fmt_of(rec, m)
  local key = rec .. m
  local f = fmt_cache[key]
  if not f then f = '<' .. string.rep(rec, m); fmt_cache[key] = f end
  return f
end
-- All records of a blob as one flat array (nfields values per record) and their number.
local function unpack_all(blob, header, rec, width, nfields)
  local n = (#blob - header) / width
  if n <= 0 then return {}, 0 end
  if n <= CHUNK then return {struct.unpack(fmt_of(rec, n), blob, header + 1)}, n end
  local vals, done, pos = {}, 0, header + 1
  while done < n do
    local m = math.min(CHUNK, n - done)
    local chunk = {struct.unpack(fmt_of(rec, m), blob, pos)}
    local base = done * nfields
    for j = 1, m * nfields do vals[base + j] = chunk[j] end
    done = done + m
    pos = pos + m * width
  end
  return vals, n
end
local function bit_of(bits, k) return math.floor(bits / k) % 2 end
"""

UPDATE_SCRIPT: Final = (
    COMMON
    + r"""
local D1, D7, D30 = {D1}, {D7}, {D30}
local REF_END, REF_START = {REF_END}, {REF_START}
local DELAY = {DELAY}
local HIGH, PLAIN, NOISE = {HIGH}, {PLAIN}, {NOISE}

-- ARGV[1]: '0' read only, '1' record (rows too late are refused, the others recorded),
-- '2' record all or nothing (a row too late: nothing is recorded).
local mode = ARGV[1]
local record = mode ~= '0'
local card_keep, term_keep, id_keep = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local card_ttl, term_ttl, id_ttl = ARGV[5], ARGV[6], ARGV[7]
local max_late, paired = tonumber(ARGV[8]), ARGV[9] == '1'
local ops = ARGV[10]
local FIRST_ID = 10

-- Forget remembered ids older than the retention (event time of the entity's newest row).
local function trim_ids(ik, oldest, newest)
  if oldest == 0 or oldest > newest - id_keep then return oldest end
  local all = redis.call('HGETALL', ik)
  local keep_oldest = 0
  for j = 1, #all, 2 do
    local tj = struct.unpack('<I4', all[j + 1])
    if tj <= newest - id_keep then
      redis.call('HDEL', ik, all[j])
    elseif keep_oldest == 0 or tj < keep_oldest then
      keep_oldest = tj
    end
  end
  return keep_oldest
end

local function remember(ik, txid, t, res, oldest)
  if txid == '' then return oldest end
  redis.call('HSET', ik, txid, struct.pack('<I4', t) .. res)
  redis.call('PEXPIRE', ik, id_ttl)
  if oldest == 0 or t < oldest then return t end
  return oldest
end

local function card_op(hk, ik, t, a, tag, txid)
  if txid ~= '' then
    local prev = redis.call('HGET', ik, txid)
    if prev then return '\1' .. string.sub(prev, 5) end
  end
  local blob = redis.call('GET', hk) or ''
  local oldest = 0
  if #blob >= 4 then oldest = struct.unpack('<I4', blob, 1) end
  local v, n = unpack_all(blob, 4, 'I4dH', 14, 3)
  local c1, c7, c30, s1, s7, s30, q30, rc, rs, h1, h7 = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
  local ins = n
  -- Window edges as times: a row at tj is in (t - span, t] when tj > t - span.
  local lo1, lo7, lo30, ref_lo, ref_hi = t - D1, t - D7, t - D30, t - REF_START, t - REF_END
  for j = 1, n do
    local b = 3 * j
    local tj = v[b - 2]
    if tj > t then ins = j - 1; break end
    if tj > lo30 then
      local aj = v[b - 1]
      c30 = c30 + 1; s30 = s30 + aj; q30 = q30 + aj * aj
      if tj > lo7 then
        local high = v[b] % 2
        c7 = c7 + 1; s7 = s7 + aj; h7 = h7 + high
        if tj > lo1 then c1 = c1 + 1; s1 = s1 + aj; h1 = h1 + high end
      end
      if tj <= ref_hi then rc = rc + 1; rs = rs + aj end
    elseif tj > ref_lo then
      rc = rc + 1; rs = rs + v[b - 1]
    end
  end
  c1 = c1 + 1; c7 = c7 + 1; c30 = c30 + 1
  s1 = s1 + a; s7 = s7 + a; s30 = s30 + a; q30 = q30 + a * a
  local ref
  if rc > 0 then ref = rs / rc else ref = s30 / c30 end
  local high, plain = 0, 0
  if a > HIGH * ref then high = 1 end
  if a <= PLAIN * ref then plain = 1 end
  h1 = h1 + high; h7 = h7 + high
  local m30 = s30 / c30
  local var = q30 / c30 - m30 * m30
  if var <= NOISE * math.max(m30 * m30, 1.0) then var = 0 end
  local res = struct.pack('<I4I4I4dddddI4I4', c1, c7, c30, s1 / c1, s7 / c7, m30, math.sqrt(var),
                          ref, h1, h7)
  if not record then return '\2' .. res end

  local rec = struct.pack('<I4dH', t, a, high + 2 * plain + 8 * tag)
  local newest = t
  if n > 0 and v[3 * n - 2] > t then newest = v[3 * n - 2] end
  local k = 0
  while k < n and v[3 * (k + 1) - 2] <= newest - card_keep do k = k + 1 end
  local new_oldest = trim_ids(ik, remember(ik, txid, t, res, oldest), newest)
  -- Always one SET of the whole history: APPEND would leave the value over-allocated.
  local header = struct.pack('<I4', new_oldest)
  local cut = 4 + k * 14
  if #blob == 0 then
    redis.call('SET', hk, header .. rec, 'PX', card_ttl)
  elseif ins < k then
    redis.call('SET', hk, header .. string.sub(blob, cut + 1), 'PX', card_ttl)
  else
    local at = 4 + ins * 14
    redis.call('SET', hk, header .. string.sub(blob, cut + 1, at) .. rec
               .. string.sub(blob, at + 1), 'PX', card_ttl)
  end
  return '\0' .. res
end

local function terminal_op(hk, ik, t, tag, txid)
  if txid ~= '' then
    local prev = redis.call('HGET', ik, txid)
    if prev then return '\1' .. string.sub(prev, 5) end
  end
  local blob = redis.call('GET', hk) or ''
  local hnb, hplain, hfirst, oldest = 0, 0, 0, 0
  if #blob >= 16 then hnb, hplain, hfirst, oldest = struct.unpack('<I4I4I4I4', blob, 1) end
  local v, n = unpack_all(blob, 16, 'I4H', 6, 2)
  local td = t - DELAY
  local n1, n7, n30, f1, f7, f30 = 0, 0, 0, 0, 0, 0
  local last, ins = 0, n
  local lo1, lo7, lo30 = td - D1, td - D7, td - D30
  for j = 1, n do
    local tj = v[2 * j - 1]
    if tj > td then
      if tj > t then ins = j - 1; break end
    else
      last = j
      if tj > lo30 then
        local fraud = bit_of(v[2 * j], 2)
        n30 = n30 + 1; f30 = f30 + fraud
        if tj > lo7 then
          n7 = n7 + 1; f7 = f7 + fraud
          if tj > lo1 then n1 = n1 + 1; f1 = f1 + fraud end
        end
      end
    end
  end
  -- The run: known frauds after the last known genuine row (unlabelled known = genuine).
  local rn, rp, rf = 0, 0, 0
  local j = last
  while j >= 1 and bit_of(v[2 * j], 2) == 1 do
    rn = rn + 1; rp = rp + bit_of(v[2 * j], 4); rf = v[2 * j - 1]
    j = j - 1
  end
  if j == 0 and hnb > 0 then rn = rn + hnb; rp = rp + hplain; rf = hfirst end
  local res = struct.pack('<I4I4I4I4I4I4I4I4I4', n1, n7, n30, f1, f7, f30, rn, rp, rf)
  if not record then return '\2' .. res end

  local rec = struct.pack('<I4H', t, 8 * tag)
  local newest = t
  if n > 0 and v[2 * n - 1] > t then newest = v[2 * n - 1] end
  local k = 0
  while k < n and v[2 * (k + 1) - 1] <= newest - term_keep do k = k + 1 end
  local new_oldest = trim_ids(ik, remember(ik, txid, t, res, oldest), newest)
  if #blob == 0 then
    local header = struct.pack('<I4I4I4I4', 0, 0, 0, new_oldest)
    redis.call('SET', hk, header .. rec, 'PX', term_ttl)
  else
    -- Fold the forgotten rows into the run they end with.
    for q = 1, k do
      local bits = v[2 * q]
      if bit_of(bits, 2) == 1 then
        if hnb == 0 then hfirst = v[2 * q - 1] end
        hnb = hnb + 1; hplain = hplain + bit_of(bits, 4)
      else
        hnb, hplain, hfirst = 0, 0, 0
      end
    end
    local header = struct.pack('<I4I4I4I4', hnb, hplain, hfirst, new_oldest)
    local cut = 16 + k * 6
    if ins < k then
      redis.call('SET', hk, header .. string.sub(blob, cut + 1), 'PX', term_ttl)
    else
      local at = 16 + ins * 6
      redis.call('SET', hk, header .. string.sub(blob, cut + 1, at) .. rec
                 .. string.sub(blob, at + 1), 'PX', term_ttl)
    end
  end
  return '\0' .. res
end

local nops = #ops / 17

-- With max_late >= 0 (refuse_late on), refuse rows more than max_late behind their card's
-- or terminal's newest row (the stored newest, then earlier rows of this call): rows their
-- windows need may be trimmed already.
-- Checked before anything is written. Paired (standalone): ops 2i-1 and 2i are row i's card
-- and terminal, refused together, so a refused row is never half-recorded. A remembered id
-- is a retry (answered from memory, not recorded): never refused.
-- refused[j]: 3 = this op's entity is too far ahead, 4 = refused for its partner or (all or
-- nothing) for another row.
local refused, any_refused = {}, false
if record and max_late >= 0 then
  local newest = {}
  local function newest_of(k, kind)
    local v = newest[k]
    if v == nil then
      local width, header = 14, 4
      if kind == 2 then width, header = 6, 16 end
      local len = redis.call('STRLEN', KEYS[k])
      v = 0
      if len >= header + width then
        v = struct.unpack('<I4', redis.call('GETRANGE', KEYS[k], len - width, len - width + 3))
      end
      newest[k] = v
    end
    return v
  end
  local step = 1
  if paired then step = 2 end
  local i = 1
  while i <= nops do
    local last = math.min(i + step - 1, nops)
    local row_late = false
    for j = i, last do
      local kind, k, t = struct.unpack('<BHI4', ops, (j - 1) * 17 + 1)
      local txid = ARGV[FIRST_ID + j]
      if t + max_late < newest_of(k, kind)
         and not (txid ~= '' and redis.call('HEXISTS', KEYS[k + 1], txid) == 1) then
        refused[j] = 3
        row_late = true
      end
    end
    for j = i, last do
      local kind, k, t = struct.unpack('<BHI4', ops, (j - 1) * 17 + 1)
      if row_late then
        if not refused[j] then refused[j] = 4 end
      elseif t > newest_of(k, kind) then
        newest[k] = t
      end
    end
    if row_late then any_refused = true end
    i = last + 1
  end
end
local CARD_EMPTY, TERMINAL_EMPTY = string.rep('\0', 60), string.rep('\0', 36)
local function refusal(kind, code)
  if kind == 1 then return string.char(code) .. CARD_EMPTY end
  return string.char(code) .. TERMINAL_EMPTY
end

local out = {}
for i = 1, nops do
  local kind, k, t, a, tag = struct.unpack('<BHI4dH', ops, (i - 1) * 17 + 1)
  local txid = ARGV[FIRST_ID + i]
  if any_refused and (refused[i] or mode == '2') then
    out[i] = refusal(kind, refused[i] or 4)
  elseif kind == 1 then
    out[i] = card_op(KEYS[k], KEYS[k + 1], t, a, tag, txid)
  else
    out[i] = terminal_op(KEYS[k], KEYS[k + 1], t, tag, txid)
  end
end
return table.concat(out)
"""
)
