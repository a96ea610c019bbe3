"""Symbol names to book rows inside a kernel: an open-addressing hash table over the bytes.

Owner: built once by run.allocate (main thread, start-up); read by the hot thread's chunk
kernel (hotctx.process_chunk), which finds a level2 frame's symbol in its topic
("/market/level2:BTC-USDT", docs/kucoin.md 3.6) without making a Python bytes object or a
dict lookup per frame.

Layout (`SymbolTable`): `slots` int32[cap] (cap a power of two >= 4 x symbols; 0 = empty,
else row + 1), `names` uint8[nsym, width] (the name's bytes, zero padded) and `lens`
int32[nsym]. FNV-1a over the name's bytes, linear probing; a lookup compares the bytes, so
an unknown symbol can never alias a known one.

Tests: tests/test_topics.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

# The level2 topic prefix and subject (docs/kucoin.md 3.6): found by a byte search, since each
# string occurs only in its field in KuCoin's frames.
L2_TOPIC = np.frombuffer(b'"/market/level2:', np.uint8)
L2_SUBJECT = np.frombuffer(b'"subject":"trade.l2update"', np.uint8)


class SymbolTable:
    def __init__(self, symbols: list[str]):
        names = [s.encode() for s in symbols]
        width = max((len(n) for n in names), default=1)
        cap = 16
        while cap < 4 * len(names):
            cap *= 2
        self.slots = np.zeros(cap, np.int32)
        self.names = np.zeros((max(1, len(names)), width), np.uint8)
        self.lens = np.zeros(max(1, len(names)), np.int32)
        for row, n in enumerate(names):
            self.names[row, :len(n)] = np.frombuffer(n, np.uint8)
            self.lens[row] = len(n)
            raw = np.frombuffer(n, np.uint8)
            if lookup(raw, 0, len(n), self.slots, self.names, self.lens) >= 0:
                raise ValueError(f"symbol {n!r} listed twice")
            i = int(fnv1a(raw, 0, len(n))) & (cap - 1)
            while self.slots[i]:
                i = (i + 1) & (cap - 1)
            self.slots[i] = row + 1

    def row(self, name: bytes) -> int:
        raw = np.frombuffer(name, np.uint8)
        return int(lookup(raw, 0, len(raw), self.slots, self.names, self.lens))


@njit(nogil=True, cache=True, _nrt=False)
def fnv1a(buf, s, e):
    h = _FNV_OFFSET
    for i in range(s, e):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@njit(nogil=True, cache=True, _nrt=False)
def lookup(buf, s, e, slots, names, lens):
    """Row of the symbol whose name is buf[s:e], or -1."""
    n = e - s
    if n <= 0 or n > names.shape[1]:
        return -1
    mask = len(slots) - 1
    i = np.int64(fnv1a(buf, s, e) & np.uint64(mask))
    while True:
        r = slots[i]
        if r == 0:
            return -1
        row = r - 1
        if lens[row] == n:
            same = True
            for k in range(n):
                if names[row, k] != buf[s + k]:
                    same = False
                    break
            if same:
                return row
        i = (i + 1) & mask


@njit(nogil=True, cache=True, _nrt=False)
def find(buf, s, e, pat):
    """First index of pat in buf[s:e], or -1 (pat is short; frames are a few hundred bytes)."""
    m = len(pat)
    first = pat[0]
    for i in range(s, e - m + 1):
        if buf[i] != first:
            continue
        k = 1
        while k < m and buf[i + k] == pat[k]:
            k += 1
        if k == m:
            return i
    return -1


@njit(nogil=True, cache=True, _nrt=False)
def level2_symbol(buf, s, e, slots, names, lens):
    """For the frame buf[s:e]: -2 when it is not a level2 update, -3 when it is one without a
    readable topic, -1 when its symbol is not ours, else its book row."""
    if find(buf, s, e, L2_SUBJECT) < 0:
        return -2
    i = find(buf, s, e, L2_TOPIC)
    if i < 0:
        return -3
    i += len(L2_TOPIC)
    j = i
    while j < e and buf[j] != 34:   # the closing quote
        j += 1
    if j == e or j == i:
        return -3
    return lookup(buf, i, j, slots, names, lens)
