"""End to end: no frame kills the hot thread, and broken books show and heal.

One live engine (tests/engine_harness.EngineRun: hot, maint, executor and log threads) against
its own simulator; frames no venue sends are injected with POST /sim/control inject_frame
(sim/server.py) on the public and the private link:
1. the two frames that used to kill the hot thread (a pong whose id pysimdjson cannot hold:
   BIGINT_ERROR; 1025 nested arrays: DEPTH_ERROR) and a level2 frame with an absurd
   sequenceEnd, on both links: the engine keeps running, counts exactly those bad frames,
   the two affected books are rejected-then-resynced (and equal the simulator's), and a
   planted mispricing afterwards trades to FILLED;
2. a level2 frame that crosses a book (in sequence): the status line shows it crossed, the
   hot thread resyncs it after books' grace, and it equals the simulator's again;
3. a book whose frames the simulator withholds: the status line counts it silent, not
   synced, until its stream comes back;
4. a few hundred fuzz frames (tests/test_fuzz.py's corpus) over both links: bad frames
   counted within their labels, no internal error, books equal the simulator's, and a
   planted mispricing still trades to FILLED.

~60 s. Run: python -m pytest -q tests/test_robust.py
"""
from __future__ import annotations

import base64
import json
import random
import re
import time

import pytest

import report
from engine_harness import EngineRun
from test_fuzz import private_corpus, public_corpus
from test_hot import mismatches, nsym, quiesce

BALANCES = "USDT=1000,USDC=1000,BTC=0.05,ETH=1,KCS=100"
BIGINT = '{"type":"pong","id":123456789012345678901234567890}'
DEEP = "[" * 1025 + "]" * 1025


@pytest.fixture(scope="module")
def er():
    with EngineRun(slots=2, silent_book_s=3, fill_timeout_ms=3000,
                   sim={"balances": BALANCES, "update_rate": 200}) as e:
        assert e.wait_for(lambda: e.books_synced() == nsym(e), 25), e.counters()
        yield e


def hot_alive(er) -> bool:
    return any(t.name == "hot" and t.is_alive() for t in er.engine.threads) and not er.engine.thread_failure


def delta(er, before):
    now = er.counters()
    return {k: now[k] - before[k] for k in now}


def status(er) -> str:
    return er.engine.status_line(er.sh.counters.copy(), 1.0)


def inject(er, scope, text=None, raw=None):
    kw = {"scope": scope}
    if raw is not None:
        kw["b64"] = base64.b64encode(raw).decode()
    else:
        kw["data"] = text
    assert er.sim_control(inject_frame=kw)["injected"] == 1


def l2_frame(name, start, end, bids=(), asks=()):
    return json.dumps({"type": "message", "topic": f"/market/level2:{name}", "subject": "trade.l2update",
                       "data": {"changes": {"asks": [list(map(str, c)) for c in asks],
                                            "bids": [list(map(str, c)) for c in bids]},
                                "sequenceEnd": end, "sequenceStart": start, "symbol": name,
                                "time": int(time.time() * 1000)}}, separators=(",", ":"))


def books_equal_sim(er):
    """Market paused and settled: every book SYNCED and equal to GET /sim/book."""
    quiesce(er)
    bad = mismatches(er)
    assert not bad, f"{len(bad)} differences, first: {bad[:4]}"


def trades_filled(er, timeout=25.0):
    """A planted mispricing is traded to FILLED (live: the simulator matched all three legs)."""
    n0 = len(er.records)
    for _ in range(3):
        if er.sim_control(plant={})["mispricing"] is not None:
            break
        time.sleep(0.5)
    got = er.wait_for(lambda: any(r.status == report.STATUS_FILLED for r in er.records[n0:]), timeout)
    assert got, ([report.format_line(r) for r in er.records[n0:]], er.counters())


def test_killer_frames_and_absurd_sequence_on_both_links_then_engine_lives_books_resync_and_trades(er):
    names = er.sh.universe.symbols
    pub_sym, priv_sym = names[4], names[9]
    ids = [er.sh.universe.sym_index[s] for s in (pub_sym, priv_sym)]
    quiesce(er)                                       # paused: each book's sequence stands still
    snaps0 = er.sh.book_state["n_snap"].copy()
    c0 = er.counters()
    try:
        for scope in ("public", "private"):
            inject(er, scope, BIGINT)
            inject(er, scope, DEEP)
        for scope, name in (("public", pub_sym), ("private", priv_sym)):
            s = int(er.sim_get(f"/sim/book?symbol={name}")["sequence"])
            bid = er.sim_get(f"/sim/book?symbol={name}")["bids"][0]
            # in sequence, one consistent change, but a sequenceEnd 10**17 ahead
            inject(er, scope, l2_frame(name, s + 1, s + 10 ** 17, bids=[[bid[0], "123", s + 1]]))
        assert er.wait_for(lambda: delta(er, c0)["bad_frames"] >= 6 and delta(er, c0)["seq_rejects"] >= 2, 10), \
            delta(er, c0)
        # the two books went back to a snapshot and are synced again
        assert er.wait_for(lambda: all(er.sh.book_state["n_snap"][i] > snaps0[i] and
                                       er.sh.book_state["status"][i] == 2 for i in ids), 10)
        d = delta(er, c0)
        assert d["bad_frames"] == 6 and d["seq_rejects"] == 2, d
        assert d["hot_errors"] == 0 and d["reconnects"] == 0, d
        assert all(int(er.sh.book_state["n_seq_bad"][i]) == 1 for i in ids)
        assert hot_alive(er)
        books_equal_sim(er)
        # on a slow machine the paused books may pass silent_book_s while the injected frames
        # are the link's traffic; 5 s after the last one no book counts as silent any more
        want = f"books {nsym(er)}/{nsym(er)} synced, 0 crossed, 0 silent"
        assert er.wait_for(lambda: want in status(er), 10), status(er)
        line = status(er)
        assert re.search(r"bad frames \d+ errors 0 ", line), line
    finally:
        er.sim_control(paused=False)
    trades_filled(er)
    assert hot_alive(er) and er.counters()["hot_errors"] == 0


def test_crossed_book_then_shown_crossed_resynced_after_grace_and_equal_to_sim(er):
    name = er.sh.universe.symbols[7]
    i = er.sh.universe.sym_index[name]
    quiesce(er)
    c0 = er.counters()
    try:
        book = er.sim_get(f"/sim/book?symbol={name}")
        s, ask = int(book["sequence"]), float(book["asks"][0][0])
        inject(er, "public", l2_frame(name, s + 1, s + 1, bids=[[f"{ask * 1.01:.10g}", "1", s + 1]]))
        # (books of the paused market that got nothing for silent_book_s while this one got
        # a frame count as silent: the link delivers, they get nothing)
        assert er.wait_for(lambda: ", 1 crossed," in status(er), 5, step=0.02), status(er)
        m = re.search(r"books (\d+)/(\d+) synced, 1 crossed, (\d+) silent", status(er))
        assert m and int(m[1]) + 1 + int(m[3]) == int(m[2]) == nsym(er), status(er)
        assert er.wait_for(lambda: delta(er, c0)["crossed_resyncs"] == 1 and
                           er.sh.book_state["status"][i] == 2, 10), delta(er, c0)
        assert int(er.sh.book_state["n_crossed"][i]) == 1 and delta(er, c0)["bad_frames"] == 0
        books_equal_sim(er)
        assert ", 0 crossed, " in status(er)
    finally:
        er.sim_control(paused=False)
    er.wait_for(lambda: er.books_synced() == nsym(er), 10)


def test_book_without_frames_while_others_get_them_then_silent_until_its_stream_returns(er):
    name = er.sh.universe.symbols[2]
    try:
        er.sim_control(sequence_gap={"symbol": name, "count": 10 ** 6})   # applied, never sent
        assert er.wait_for(lambda: ", 0 crossed, 1 silent" in status(er), 15), status(er)
        assert f"books {nsym(er) - 1}/{nsym(er)} synced" in status(er)
    finally:
        er.sim_control(reset_faults=True)
    # its next message is a gap: resynced, and no longer silent
    assert er.wait_for(lambda: f"books {nsym(er)}/{nsym(er)} synced, 0 crossed, 0 silent" in status(er), 15), \
        status(er)


def test_fuzz_frames_over_both_links_then_counted_books_heal_and_engine_still_trades(er):
    rng = random.Random(77)
    frames = [("public",) + x for x in public_corpus(rng, 260)] + \
             [("private",) + x for x in private_corpus(rng, 140)]
    rng.shuffle(frames)
    n_bad = sum(1 for _, label, _ in frames if label == "bad")
    n_any = sum(1 for _, label, _ in frames if label == "any")
    c0 = er.counters()
    for scope, _, payload in frames:
        inject(er, scope, raw=payload)
    assert er.wait_for(lambda: er.sim_get("/sim/state")["ws"]["counters"]["frames_injected"] and
                       delta(er, c0)["bad_frames"] >= n_bad, 20), (delta(er, c0), n_bad)
    time.sleep(0.5)
    d = delta(er, c0)
    assert n_bad <= d["bad_frames"] <= n_bad + n_any, (d["bad_frames"], n_bad, n_any)
    assert d["hot_errors"] == 0 and d["reconnects"] == 0, d
    assert hot_alive(er)
    assert er.wait_for(lambda: er.books_synced() == nsym(er), 20), status(er)
    try:
        books_equal_sim(er)
    finally:
        er.sim_control(paused=False)
    trades_filled(er)
    assert hot_alive(er) and er.counters()["hot_errors"] == 0
