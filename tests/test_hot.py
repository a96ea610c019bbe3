"""Acceptance tests of the hot thread against the simulator (whole engine in-process).

1. Books through faults. A paper-mode engine that never trades (min_profit_bps = 10000,
   the config's maximum) watches a moving simulator market (300 level2 messages/s over 40
   symbols). Each test injects faults through /sim/control (sequence gaps on several
   symbols, dropped frames, delayed frames with a gap, failed snapshot fetches, public
   and full disconnects, graceful and abrupt, expired tokens), waits until the counters
   show the gap/resync/reconnect and every book is SYNCED again and has applied something
   after the fault, then pauses the simulator, waits for frames in flight to land, and
   compares every book with GET /sim/book: the sequence, and every level the engine holds
   (exact float(str) equality of price and size). The engine holds a capped book (books.py
   "Depth cap and horizon"): every level strictly better than its horizon price, exactly,
   and nothing else, so the comparison is "the simulator's levels better than the horizon
   are exactly the engine's levels" - a level missing, extra, or off by one size fails.
2. Planted mispricings are signalled while they last. Definition chosen by the lead: a
   planted mispricing {moved_symbol, moved_side, t_ms, taken_t_ms} is caught when the
   engine signals, while it lasts, a triangle with a leg that consumes the moved side of
   the moved symbol (a sell leg on it if its bid moved up, a buy leg if its ask moved
   down). Taking the mispriced liquidity through any triangle is what matters: after that
   the planted cycle is no longer profitable. "While it lasts": the signal's evaluation
   time (report record evaluated_ns, monotonic, mapped to the wall clock of this process)
   lies in [t_ms, taken_t_ms] widened by CLOCK_SLACK_MS before and FRAME_GRACE_MS after
   (the take's own level2 frame is still in flight when the simulator stamps taken_t_ms;
   a signal made before the engine has seen it is still on the planted book). Live mode,
   primaries USDT, USDC, BTC, ETH, KCS (the simulator plants cycles from KCS too), 2 slots.
   retrigger_ms = 100 (< take_delay_ms): with the default 1000 ms a triangle signalled for
   one mispricing may not signal for the next one planted on it within a second, which is
   the documented retrigger rule, not a miss of the hot path under test.

3. Over TLS too: the books-through-faults tests run twice, against a plain simulator and
   against one serving https/wss (`[sim] tls = true`: the engine's links read TLS records
   with the GIL held, tlsio.py), ids [plain] and [tls].

Run: `python -m pytest -q tests/test_hot.py` (~75 s).
"""
from __future__ import annotations

import time

import pytest

from engine_harness import EngineRun

import books
import maint
import triangles

NEVER_BPS = 10000            # config maximum: no triangle ever reaches it
FRAME_GRACE_MS = 100
CLOCK_SLACK_MS = 5
PRIMARIES = "USDT,USDC,BTC,ETH,KCS"
MAX_START = "USDT=100,USDC=100,BTC=0.002,ETH=0.05,KCS=15"


# ---- helpers ------------------------------------------------------------------------------

def nsym(er) -> int:
    return len(er.sh.universe.symbols)


def sim_state(er) -> dict:
    return er.sim_get("/sim/state")


def settle(er, since_ns: int, what: str, timeout: float = 20.0) -> None:
    """Every book SYNCED and holding something applied after since_ns (a frame or a
    snapshot): a fault not yet detected on some book cannot pass this."""
    st = er.sh.book_state
    ok = er.wait_for(lambda: er.books_synced() == nsym(er) and bool((st["recv_ns"] > since_ns).all()),
                     timeout)
    assert ok, (f"{what}: {er.books_synced()}/{nsym(er)} synced, "
                f"{int((st['recv_ns'] <= since_ns).sum())} books without news; {er.counters()}")


def quiesce(er) -> None:
    """Pause the simulator's market and wait until no frame has arrived for 0.3 s (at
    least 0.5 s in all): frames in flight (or delayed) have landed."""
    er.sim_control(paused=True)
    time.sleep(0.5)
    last, since = er.counters()["msgs"], time.monotonic()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = er.counters()["msgs"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.3:
            break
    # a refill snapshot may still be on its way: wait for every book to be settled
    er.wait_for(lambda: er.books_synced() == nsym(er) and not er.sh.book_state["refill"].any(), 5)


def mismatches(er) -> list:
    """Every difference between the engine's books and the simulator's (see docstring)."""
    sh = er.sh
    bad = []
    for i, name in enumerate(sh.universe.symbols):
        sim = er.sim_get(f"/sim/book?symbol={name}")
        b = sh.book_state[i]
        if b["status"] != books.BOOK_SYNCED:
            bad.append((name, "status", int(b["status"])))
            continue
        if int(b["seq"]) != int(sim["sequence"]):
            bad.append((name, "seq", int(b["seq"]), int(sim["sequence"])))
        for side, key, nkey, hkey, sgn in ((books.SIDE_BID, "bids", "n_bid", "hz_bid_px", -1.0),
                                            (books.SIDE_ASK, "asks", "n_ask", "hz_ask_px", 1.0)):
            hz = float(b[hkey])
            want = [(float(p), float(s)) for p, s in sim[key] if sgn * float(p) < sgn * hz]
            n = int(b[nkey])
            have = [(float(sh.book_px[i, side, k]), float(sh.book_sz[i, side, k])) for k in range(n)]
            if have != want:
                k = next((k for k in range(min(len(have), len(want))) if have[k] != want[k]),
                         min(len(have), len(want)))
                bad.append((name, key, f"held {len(have)} want {len(want)} (horizon {hz})",
                            f"first difference at level {k}: held "
                            f"{have[k] if k < len(have) else None} sim {want[k] if k < len(want) else None}"))
            if n < 1 or n > sh.book_px.shape[2]:
                bad.append((name, key, "levels held", n))
    return bad


def assert_books_equal_sim(er) -> None:
    quiesce(er)
    try:
        bad = mismatches(er)
        assert not bad, f"{len(bad)} differences, first: {bad[:4]}"
    finally:
        er.sim_control(paused=False)


def delta(er, before: dict) -> dict:
    now = er.counters()
    return {k: now[k] - before[k] for k in now}


def connections(er) -> tuple[list, list]:
    conns = sim_state(er)["ws"]["connections"]
    return [c for c in conns if not c["private"]], [c for c in conns if c["private"]]


def wait_links_back(er, old_ids: set, timeout: float = 15.0) -> None:
    """A public link carrying every symbol and a private link with both private topics,
    each a new connection (connectId not seen before the fault)."""
    def back():
        pub, priv = connections(er)
        return (len(pub) == 1 and pub[0]["topics"] == nsym(er) and pub[0]["connectId"] not in old_ids
                and len(priv) == 1 and priv[0]["topics"] == len(maint.PRIVATE_TOPICS))
    assert er.wait_for(back, timeout), f"links not back: {connections(er)}"


# ---- 1. books through faults ----------------------------------------------------------------

@pytest.fixture(scope="module", params=["plain", "tls"])
def paper(request):
    tls = request.param == "tls"
    with EngineRun(sim={"update_rate": 300, "symbols": 40, "seed": 11, "tls": str(tls).lower()},
                   mode="paper", min_profit_bps=NEVER_BPS, status_interval_s=5) as er:
        assert er.sh.rest_url.startswith("https://" if tls else "http://")
        assert er.wait_for(lambda: er.books_synced() == nsym(er), 20), er.counters()
        yield er


@pytest.fixture
def eng(paper):
    """The shared paper engine, with no fault left on and the market moving."""
    paper.sim_control(reset_faults=True, paused=False)
    settle(paper, time.monotonic_ns(), "before the test")
    yield paper
    paper.sim_control(reset_faults=True, paused=False)


def test_books_when_market_moves_without_faults_then_equal_to_sim(eng):
    c0 = eng.counters()
    time.sleep(0.5)
    d = delta(eng, c0)
    assert d["applied"] > 50 and d["gaps"] == 0 and d["bad_frames"] == 0
    # the simulator's stream never trips books.py's sequence sanity rules
    assert d["seq_rejects"] == 0 and d["diverged"] == 0 and d["crossed_resyncs"] == 0
    assert d["hot_errors"] == 0
    assert_books_equal_sim(eng)
    assert eng.sh.counters[0] > 0 and eng.counters()["signals"] == 0


def test_books_when_sequence_gaps_on_several_symbols_then_resynced_and_equal_to_sim(eng):
    names = eng.sh.universe.symbols[:: max(1, nsym(eng) // 5)][:5]
    ids = [eng.sh.universe.sym_index[s] for s in names]
    gaps0 = eng.sh.book_state["n_gap"].copy()
    snaps0 = eng.sh.book_state["n_snap"].copy()
    c0 = eng.counters()
    for k, s in enumerate(names):
        eng.sim_control(sequence_gap={"symbol": s, "count": 1 + k % 3})
    # each withheld run is one gap, seen at the symbol's next message
    assert eng.wait_for(lambda: delta(eng, c0)["gaps"] >= len(names), 15), delta(eng, c0)
    settle(eng, time.monotonic_ns() + 50_000_000, "after sequence gaps")
    d = delta(eng, c0)
    assert d["gaps"] == len(names), d
    assert d["resyncs"] >= len(names) and d["snapshots"] >= len(names)
    g = eng.sh.book_state["n_gap"] - gaps0
    assert all(g[i] == 1 for i in ids) and g.sum() == len(names)
    assert all(eng.sh.book_state["n_snap"][i] > snaps0[i] for i in ids)
    assert sim_state(eng)["market"]["counters"]["l2_withheld"] >= 6
    assert_books_equal_sim(eng)


def test_books_when_public_frames_dropped_then_gaps_found_and_equal_to_sim(eng):
    c0 = eng.counters()
    dropped0 = sim_state(eng)["faults"]["counters"]["frames_dropped"]
    eng.sim_control(drop_frames={"count": 6, "scope": "public"})
    assert eng.wait_for(lambda: sim_state(eng)["faults"]["counters"]["frames_dropped"] - dropped0 == 6, 10)
    settle(eng, time.monotonic_ns() + 100_000_000, "after dropped frames")
    d = delta(eng, c0)
    assert 1 <= d["gaps"] <= 6 and d["resyncs"] >= d["gaps"], d
    assert d["reconnects"] == 0
    assert_books_equal_sim(eng)


def test_books_when_frames_delayed_and_gaps_then_stale_frames_skipped_and_equal_to_sim(eng):
    """The REST snapshot (not delayed) is newer than frames still in flight: those must be
    skipped as stale (docs/kucoin.md 3.8), not applied twice or taken for a gap."""
    names = eng.sh.universe.symbols[1::6][:6]
    c0 = eng.counters()
    eng.sim_control(delay_frames_ms=250)
    for s in names:
        eng.sim_control(sequence_gap={"symbol": s, "count": 1})
    assert eng.wait_for(lambda: delta(eng, c0)["gaps"] >= len(names), 15), delta(eng, c0)
    settle(eng, time.monotonic_ns() + 300_000_000, "after delayed gaps")
    eng.sim_control(delay_frames_ms=0)
    d = delta(eng, c0)
    assert d["gaps"] == len(names) and d["stale"] >= 1 and d["snapshot_too_old"] == 0, d
    time.sleep(0.3)                       # frames queued with the delay have gone out
    assert_books_equal_sim(eng)


def test_books_when_snapshot_fetches_fail_then_retried_and_equal_to_sim(eng):
    names = eng.sh.universe.symbols[2::9][:3]
    errors0 = eng.engine.maint.snapshot_errors
    c0 = eng.counters()
    eng.sim_control(rest_5xx={"count": 2, "status": 503})
    for s in names:
        eng.sim_control(sequence_gap={"symbol": s, "count": 1})
    assert eng.wait_for(lambda: delta(eng, c0)["gaps"] >= len(names), 15), delta(eng, c0)
    settle(eng, time.monotonic_ns() + 50_000_000, "after failed snapshots")
    d = delta(eng, c0)
    assert eng.engine.maint.snapshot_errors - errors0 == 2
    assert d["resyncs"] >= len(names) + 2 and d["snapshots"] >= len(names), d
    assert_books_equal_sim(eng)


@pytest.mark.parametrize("which,abrupt,links", [("public", False, 1), ("all", False, 2),
                                                ("all", True, 2)])
def test_books_when_links_disconnected_then_reconnected_resynced_and_equal_to_sim(
        eng, which, abrupt, links):
    old = {c["connectId"] for c in sim_state(eng)["ws"]["connections"]}
    snaps0 = eng.sh.book_state["n_snap"].copy()
    c0 = eng.counters()
    t0 = time.monotonic_ns()
    out = eng.sim_control(disconnect={"which": which, "abrupt": abrupt})
    assert out["disconnected"] == links
    assert eng.wait_for(lambda: delta(eng, c0)["reconnects"] >= links, 10), delta(eng, c0)
    wait_links_back(eng, old)
    settle(eng, t0, f"after disconnect {which}")
    d = delta(eng, c0)
    assert d["reconnects"] == links, d
    # every book was on the dead public link: all of them went through a fresh snapshot
    assert (eng.sh.book_state["n_snap"] > snaps0).all()
    assert d["resyncs"] >= nsym(eng) and d["snapshots"] >= nsym(eng), d
    assert_books_equal_sim(eng)


def test_books_when_tokens_expired_and_links_dropped_then_fresh_tokens_used_and_equal_to_sim(eng):
    """docs/kucoin.md 8.1: every reconnect fetches a new bullet token. The simulator refuses
    an expired token with error 401 (a rejected connect, and a link error in maint)."""
    ws0 = sim_state(eng)["ws"]
    old = {c["connectId"] for c in ws0["connections"]}
    link_errors0 = eng.engine.maint.link_errors
    c0 = eng.counters()
    t0 = time.monotonic_ns()
    assert eng.sim_control(expire_tokens=True)["expired_tokens"] >= 2
    assert eng.sim_control(disconnect="all")["disconnected"] == 2
    wait_links_back(eng, old)
    settle(eng, t0, "after expired tokens")
    ws1 = sim_state(eng)["ws"]
    assert ws1["counters"]["rejected_connects"] == ws0["counters"]["rejected_connects"]
    assert ws1["counters"]["connects"] - ws0["counters"]["connects"] == 2
    assert eng.engine.maint.link_errors == link_errors0
    assert delta(eng, c0)["reconnects"] == 2
    assert_books_equal_sim(eng)


# ---- 2. planted mispricings are signalled while they last -----------------------------------

@pytest.fixture(scope="module")
def live():
    with EngineRun(sim={"update_rate": 200, "mispricing_rate": 0.0, "mispricing_bps": 40,
                        "take_delay_ms": 500, "symbols": 40, "seed": 11},
                   mode="live", primary_quotes=PRIMARIES, max_start=MAX_START, slots=2,
                   retrigger_ms=100) as er:
        assert er.wait_for(lambda: er.books_synced() == nsym(er), 20), er.counters()
        assert "KCS" in er.sh.universe.primaries
        yield er


def wall_offset_ms() -> float:
    """wall ms - monotonic ms in this process (the report's ns stamps are monotonic)."""
    return (time.time_ns() - time.monotonic_ns()) / 1e6


def catches(rec, m: dict) -> bool:
    """The report record's triangle has a leg consuming the moved side of the moved symbol."""
    want = triangles.LEG_SELL if m["moved_side"] == "bid" else triangles.LEG_BUY
    return any(s == m["moved_symbol"] and int(side) == want for s, side in zip(rec.symbols, rec.sides))


def signal_ms(rec, offset_ms: float) -> float:
    return rec.evaluated_ns / 1e6 + offset_ms


def first_catch(records, m: dict, offset_ms: float, last_ms: float):
    hits = [signal_ms(r, offset_ms) for r in records if catches(r, m)]
    inside = [t for t in hits if m["t_ms"] - CLOCK_SLACK_MS <= t <= last_ms]
    return (min(inside) - m["t_ms"] if inside else None), hits


def wait_idle(er, timeout: float = 10.0) -> None:
    """No triangle in flight (its report written)."""
    import slots
    assert er.wait_for(lambda: not any(slots.is_busy(er.sh.slots, k) for k in range(len(er.sh.slots))),
                       timeout)
    time.sleep(0.1)                       # the log thread appends the last record


def test_mispricings_when_planted_at_random_then_every_one_signalled_while_it_lasts(live):
    er = live
    off = wall_offset_ms()
    start_ms = int(time.time() * 1000)
    n_rec0 = len(er.records)
    er.sim_control(mispricing_rate=1.0)
    time.sleep(15)
    er.sim_control(mispricing_rate=0.0)
    # let the last ones be taken and the triangles in flight be reported
    assert er.wait_for(lambda: all(m["taken_t_ms"] for m in er.sim_get("/sim/mispricings")), 5)
    wait_idle(er)
    planted = [m for m in er.sim_get("/sim/mispricings") if m["t_ms"] > start_ms]
    records = er.records[n_rec0:]
    assert len(planted) >= 5, planted
    missed = []
    lat = []
    for m in planted:
        first, hits = first_catch(records, m, off, m["taken_t_ms"] + FRAME_GRACE_MS)
        if first is None:
            missed.append((m["id"], m["moved_symbol"], m["moved_side"], m["symbols"], m["bps"],
                           m["size"], m["size_currency"], [round(h - m["t_ms"]) for h in hits]))
        else:
            lat.append(first)
    assert not missed, (f"{len(missed)}/{len(planted)} planted mispricings never signalled while "
                        f"they lasted (id, symbol, side, cycle, bps, size, ccy, signal ms "
                        f"from plant): {missed}; counters {er.counters()}")
    assert er.counters()["bad_frames"] == 0


def test_mispricings_when_planted_one_at_a_time_then_each_signalled_within_take_delay(live):
    er = live
    take_ms = 500
    off = wall_offset_ms()
    n_rec0 = len(er.records)
    plants = []
    for p in PRIMARIES.split(",") * 2:    # every primary, twice
        rec = None
        deadline = time.monotonic() + 5
        while rec is None and time.monotonic() < deadline:
            rec = er.sim_control(plant={"primary": p})["mispricing"]
            if rec is None:
                time.sleep(0.1)           # no free triangle of that primary right now
        assert rec is not None, f"could not plant from {p}"
        plants.append(rec)
        # it lasts take_delay_ms: wait for the take before planting the next one
        assert er.wait_for(lambda: next(m for m in er.sim_get("/sim/mispricings")
                                        if m["id"] == rec["id"])["taken_t_ms"], 5)
    wait_idle(er)
    records = er.records[n_rec0:]
    missed = []
    for m in plants:
        first, hits = first_catch(records, m, off, m["t_ms"] + take_ms)
        if first is None:
            missed.append((m["id"], m["currencies"], m["moved_symbol"], m["moved_side"], m["bps"],
                           [round(h - m["t_ms"]) for h in hits]))
    assert not missed, f"not signalled within {take_ms} ms: {missed}; counters {er.counters()}"
    assert {m["currencies"][0] for m in plants} == set(PRIMARIES.split(","))
