"""Tests of paper fills that consume the book (paperbook.py).

Run: `python -m pytest -q tests/test_paperbook.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import books as B  # noqa: E402
import paperbook  # noqa: E402

ASKS = [(10.0, 1.5), (10.5, 2.0), (11.0, 4.0)]
BIDS = [(9.5, 1.0), (9.0, 3.0), (8.0, 5.0)]


def rig():
    st, px, sz = B.alloc_books(1, 8)
    spx, ssz, n = B.alloc_snapshot(8)
    for side, lv in ((B.SIDE_BID, BIDS), (B.SIDE_ASK, ASKS)):
        n[side] = len(lv)
        for k, (p, s) in enumerate(lv):
            spx[side, k], ssz[side, k] = p, s
    assert B.book_load_snapshot(st, px, sz, 0, 100, 1, 1, spx, ssz, n[0], n[1], 0) == B.SNAP_SYNCED
    return st, px, sz


def levels(st, px, sz, side):
    n = st[0]["n_bid"] if side == B.SIDE_BID else st[0]["n_ask"]
    return [(float(px[0, side, i]), float(sz[0, side, i])) for i in range(n)]


def test_walk_levels_when_buy_and_sell_then_same_totals_as_the_book_walks():
    st, px, sz = rig()
    rec = np.zeros(1, paperbook.CONSUME_DTYPE)[0]
    for funds in (5.0, 15.0, 20.0, 36.0, 100.0):
        n = paperbook.walk_levels(px, sz, 0, B.SIDE_ASK, funds, 0.1, rec["px"], rec["sz"])
        base, spent = B.walk_buy_funds(px, sz, 0, funds, 0.1)
        assert abs(sum(rec["sz"][:n]) - base) < 1e-12
        assert abs(sum(rec["px"][:n] * rec["sz"][:n]) - spent) < 1e-9
    for size in (0.5, 1.0, 2.5, 20.0):
        n = paperbook.walk_levels(px, sz, 0, B.SIDE_BID, size, 0.1, rec["px"], rec["sz"])
        assert abs(sum(rec["px"][:n] * rec["sz"][:n]) - B.walk_sell_size(px, sz, 0, size)) < 1e-9


def test_apply_when_leg_took_levels_then_taken_off_and_whole_levels_deleted():
    st, px, sz = rig()
    rec = np.zeros(1, paperbook.CONSUME_DTYPE)[0]
    rec["sym"], rec["side"] = 0, B.SIDE_ASK
    rec["n"] = paperbook.walk_levels(px, sz, 0, B.SIDE_ASK, 15.0 + 10.5, 0.1, rec["px"], rec["sz"])
    paperbook.apply_held(rec, st, px, sz)
    assert levels(st, px, sz, B.SIDE_ASK) == [(10.5, 1.0), (11.0, 4.0)]
    # the same funds again now cost more: the edge at 10.0 is gone
    base, _ = B.walk_buy_funds(px, sz, 0, 10.0, 0.1)
    assert base < 1.0
    # the venue's own update of the level replaces our subtraction (absolute size)
    assert B.book_set_level(st, px, sz, 0, B.SIDE_ASK, 10.5, 2.0) >= 0
    assert levels(st, px, sz, B.SIDE_ASK)[0] == (10.5, 2.0)


def test_apply_when_price_gone_then_skipped_and_other_side_untouched():
    st, px, sz = rig()
    rec = np.zeros(1, paperbook.CONSUME_DTYPE)[0]
    rec["sym"], rec["side"], rec["n"] = 0, B.SIDE_BID, 2
    rec["px"][:2] = (9.25, 9.0)
    rec["sz"][:2] = (1.0, 1.0)
    paperbook.apply_held(rec, st, px, sz)
    assert levels(st, px, sz, B.SIDE_BID) == [(9.5, 1.0), (9.0, 2.0), (8.0, 5.0)]
    assert levels(st, px, sz, B.SIDE_ASK) == ASKS
