"""The server-side Lua scripts of the history store, with the window spans filled in.

The update script's source is in :mod:`service.history.update_script`; the label, plain-flag
and backfill scripts are here. The spans, factors and the label delay come from
:mod:`fraud_contract.windows` (the same definitions the offline aggregates use); the scripts
implement exactly the contract's windows (asserted below, so a change to the window tuples
cannot silently leave the store behind).

Binary layouts (little-endian, ``struct`` formats as in Lua's and Python's struct modules):

* card history, a STRING: header ``I4`` (event time of the oldest remembered transaction id,
  0 = none), then one record per transaction ``I4 d H``: time (epoch seconds), amount,
  bits = high + 2 * plain + 8 * tag;
* terminal history, a STRING: header ``I4 I4 I4 I4``: the fraud run that the forgotten
  (trimmed) rows end with (count, plain count, time of its first fraud) and the oldest
  remembered id's time; then one record per transaction ``I4 H``: time, bits = labelled +
  2 * fraud + 4 * plain + 8 * tag;
* remembered ids, a HASH per card / terminal: transaction id -> ``I4`` time + the result
  returned the first time.

``tag`` is 13 bits of the transaction id's CRC-32: labels find their record by time and tag.

An update result starts with a status byte: 0 recorded, 1 replayed (a remembered id), 2 read
only, 3 refused (more than ``max_lateness`` behind its entity's newest row), 4 not written
(refused for its row's other entity, or all or nothing for another row); refused results
carry zeros.
"""

from __future__ import annotations

import hashlib
from typing import Final

from fraud_contract import windows as w
from service.history.update_script import COMMON as _COMMON
from service.history.update_script import UPDATE_SCRIPT

# The contract has exactly these windows; the scripts below compute exactly these.
assert w.CUSTOMER_WINDOWS == (1, 7, 30), "update service/history/scripts.py"
assert w.CUSTOMER_STD_WINDOWS == (30,), "update service/history/scripts.py"
assert w.HIGH_AMOUNT_WINDOWS == (1, 7), "update service/history/scripts.py"
assert w.TERMINAL_WINDOWS == (1, 7, 30), "update service/history/scripts.py"
assert w.REFERENCE_FALLBACK_DAYS == 30, "update service/history/scripts.py"

CARD_HEADER: Final = 4
CARD_RECORD: Final = 14
TERMINAL_HEADER: Final = 16
TERMINAL_RECORD: Final = 6
#: Op layout of the update script: kind (1 card, 2 terminal), index of the entity's first key
#: in KEYS, time, amount, tag.
OP_FORMAT: Final = "<BHIdH"
CARD_RESULT_FORMAT: Final = "<BIIIdddddII"
TERMINAL_RESULT_FORMAT: Final = "<BIIIIIIIII"
LABEL_OP_FORMAT: Final = "<IHB"
TAG_BITS: Final = 13

#: Labels: KEYS are terminal histories (one per op), ARGV[1] the packed ops (time, tag,
#: flags = has_tag + 2 * fraud + 4 * plain). Returns how many records each label set.
LABEL_SCRIPT: Final = (
    _COMMON
    + r"""
local out = {}
local ops = ARGV[1]
for i = 1, #KEYS do
  local t, tag, flags = struct.unpack('<I4HB', ops, (i - 1) * 7 + 1)
  local hk = KEYS[i]
  local blob = redis.call('GET', hk) or ''
  local v, n = unpack_all(blob, 16, 'I4H', 6, 2)
  local matched = 0
  local bits_new = 1 + 2 * bit_of(flags, 2) + 4 * bit_of(flags, 4)
  for j = 1, n do
    local tj = v[2 * j - 1]
    if tj > t then break end
    if tj == t then
      local rtag = math.floor(v[2 * j] / 8)
      if flags % 2 == 0 or rtag == tag then
        redis.call('SETRANGE', hk, 16 + (j - 1) * 6 + 4, struct.pack('<H', rtag * 8 + bits_new))
        matched = matched + 1
      end
    end
  end
  out[i] = matched
end
return out
"""
)

#: The plain bit of card records: KEYS card histories, ARGV[1] packed (time, tag, has_tag).
#: Returns per op 1 (plain), 0 (not plain) or -1 (no such record).
PLAIN_SCRIPT: Final = (
    _COMMON
    + r"""
local out = {}
local ops = ARGV[1]
for i = 1, #KEYS do
  local t, tag, flags = struct.unpack('<I4HB', ops, (i - 1) * 7 + 1)
  local blob = redis.call('GET', KEYS[i]) or ''
  local v, n = unpack_all(blob, 4, 'I4dH', 14, 3)
  local found = -1
  for j = 1, n do
    local tj = v[3 * j - 2]
    if tj > t then break end
    if tj == t and (flags % 2 == 0 or math.floor(v[3 * j] / 8) == tag) then
      found = bit_of(v[3 * j], 2)
      break
    end
  end
  out[i] = found
end
return out
"""
)

#: Backfill: merge sorted records (no header) into one history. KEYS[1] the history,
#: ARGV[1] kind (1 card, 2 terminal), ARGV[2] the records, ARGV[3] keep seconds, ARGV[4] TTL
#: in ms. Existing rows come first among equal times. Returns the number of rows kept.
MERGE_SCRIPT: Final = (
    _COMMON
    + r"""
local hk = KEYS[1]
local card = ARGV[1] == '1'
local incoming, keep, ttl = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local header_len, rec, width, nf = 16, 'I4H', 6, 2
if card then header_len, rec, width, nf = 4, 'I4dH', 14, 3 end
local blob = redis.call('GET', hk) or ''
local h = {0, 0, 0, 0}
if card and #blob >= 4 then h[4] = struct.unpack('<I4', blob, 1) end
if (not card) and #blob >= 16 then h[1], h[2], h[3], h[4] = struct.unpack('<I4I4I4I4', blob, 1) end
local old, n_old = unpack_all(blob, header_len, rec, width, nf)
local new, n_new = unpack_all(header_len > 0 and (string.rep('\0', header_len) .. incoming)
                              or incoming, header_len, rec, width, nf)
local merged, i, j, m = {}, 1, 1, 0
while i <= n_old or j <= n_new do
  local src, idx
  if j > n_new or (i <= n_old and old[nf * (i - 1) + 1] <= new[nf * (j - 1) + 1]) then
    src, idx = old, i; i = i + 1
  else
    src, idx = new, j; j = j + 1
  end
  m = m + 1
  merged[m] = idx * 10 + (src == old and 0 or 1)
end
local function field(entry, f)
  local idx, which = math.floor(entry / 10), entry % 10
  local src = which == 0 and old or new
  return src[nf * (idx - 1) + f]
end
local newest = 0
if m > 0 then newest = field(merged[m], 1) end
local parts, kept = {}, 0
for q = 1, m do
  local e = merged[q]
  local tq = field(e, 1)
  if tq <= newest - keep then
    if not card then
      local bits = field(e, 2)
      if bit_of(bits, 2) == 1 then
        if h[1] == 0 then h[3] = tq end
        h[1] = h[1] + 1; h[2] = h[2] + bit_of(bits, 4)
      else
        h[1], h[2], h[3] = 0, 0, 0
      end
    end
  else
    kept = kept + 1
    if card then
      parts[kept] = struct.pack('<I4dH', tq, field(e, 2), field(e, 3))
    else
      parts[kept] = struct.pack('<I4H', tq, field(e, 2))
    end
  end
end
local header = struct.pack('<I4I4I4I4', h[1], h[2], h[3], h[4])
if card then header = struct.pack('<I4', h[4]) end
redis.call('SET', hk, header .. table.concat(parts), 'PX', ttl)
return kept
"""
)


def _render(source: str) -> str:
    """Fill the window spans and rules from :mod:`fraud_contract.windows` into a script."""
    day = w.SECONDS_PER_DAY
    values = {
        "D1": w.customer_window(1).start,
        "D7": w.customer_window(7).start,
        "D30": w.customer_window(30).start,
        "REF_END": w.REFERENCE_WINDOW.end,
        "REF_START": w.REFERENCE_WINDOW.start,
        "DELAY": w.label_delay_seconds(),
        "HIGH": repr(float(w.HIGH_AMOUNT_FACTOR)),
        "PLAIN": repr(float(w.PLAIN_AMOUNT_FACTOR)),
        "NOISE": repr(float(w.VARIANCE_NOISE)),
    }
    # Terminal windows measured from the delayed end use the same day spans.
    assert w.terminal_window(30).start - w.terminal_window(30).end == 30 * day
    for name, value in values.items():
        source = source.replace("{" + name + "}", str(value))
    return source


class Script:
    """One Lua script: its rendered source and SHA-1 (for EVALSHA)."""

    def __init__(self, source: str) -> None:
        self.source = _render(source)
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()


UPDATE: Final = Script(UPDATE_SCRIPT)
LABEL: Final = Script(LABEL_SCRIPT)
PLAIN: Final = Script(PLAIN_SCRIPT)
MERGE: Final = Script(MERGE_SCRIPT)
ALL_SCRIPTS: Final = (UPDATE, LABEL, PLAIN, MERGE)
