"""hotctx.py: one kernel call per socket read (frames cut, topics looked up, level2 frames
through the fused kernel) must leave exactly what one pipeline.on_level2 call per frame
leaves: books, counters, signals (same frame, slot, triangle, corr), snapshot requests and
rejected frames. Also: the arrays rebuilt from the address table are the arrays themselves,
and the table refuses an array of the wrong layout.

Set-up: tests/test_pipeline.py's three-symbol universe (run.allocate's arrays).
Run: `python -m pytest -q tests/test_hotctx.py`.
"""
from __future__ import annotations

import struct
import time

import numpy as np
import pytest

import books
import hotctx
import orderkern
import triangles
import pipeline
import slots
import topics
import wsread
from test_pipeline import FAIR, NAMES, Seq, frame, load_fair, make_shared, sid

C = pipeline.C


def ws(payload: bytes, op=wsread.OP_TEXT, fin=True) -> bytes:
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    return bytes([b0, 126]) + struct.pack(">H", n) + payload


def _stream(rng):
    """Level2 frames as a chunk holds them: fair moves, two mispricings on ETH-BTC, a gap
    on ETH-USDT (-> snapshot request), a truncated frame (-> BAD_FRAME). Each item:
    (symbol name or None for a frame the kernel must hand back, bytes)."""
    seq = Seq()
    out = []
    for k in range(60):
        name = NAMES[int(rng.integers(0, 3))]
        s, e = seq(name)
        bids, asks = FAIR[name]
        lvl = bids[int(rng.integers(0, 3))]
        out.append((name, frame(name, s, e, bids=[[lvl[0], str(rng.integers(1, 9)), e]]).tobytes()))
        if k in (12, 24):                      # a cheap ETH-BTC ask: a signal (before the gap)
            s2, e2 = seq("ETH-BTC")
            out.append(("ETH-BTC", frame("ETH-BTC", s2, e2, asks=[["0.049", "5", e2]]).tobytes()))
            s3, e3 = seq("ETH-BTC")            # ... taken again at once (fair ask back)
            out.append(("ETH-BTC", frame("ETH-BTC", s3, e3, asks=[["0.049", "0", e3]]).tobytes()))
        if k == 30:
            seq("ETH-USDT", 5)                 # five sequences never sent: a gap
        if k == 50:
            out.append(("BTC-USDT", out[-1][1][:-30]))   # truncated inside its data
        if k == 20:
            out.append((None, b'{"id":"7","type":"ack"}'))
    return out


def _fingerprint(sh):
    return (sh.book_state.copy(), sh.book_px.copy(), sh.book_sz.copy(), sh.counters.copy(),
            sh.evc.copy(), sh.pstate[pipeline.P_CORR_NEXT])


def _run_chunk(sh, chunk: bytes, recv_ns: int):
    """What hot.HotLoop._drain does with one read: call until the chunk is done."""
    buf = np.zeros(len(chunk) + 16, np.uint8)
    buf[:len(chunk)] = np.frombuffer(chunk, np.uint8)
    res = hotctx.alloc_result()
    sigs, others = [], []
    while True:
        slot = hotctx.hot_chunk(sh.hot_table.tab, buf, len(chunk), recv_ns, res)
        if slot >= 0:
            sigs.append((int(res[hotctx.R_POS]), slot, int(sh.sig_stage[0]["tri"]),
                         int(sh.sig_stage[0]["corr"])))
            slots.undo_acquire(sh.slots, slot)
        elif slot == hotctx.OTHERS_FULL:
            raise AssertionError("no more than OTHERS_CAP other frames here")
        else:
            break
    for q in range(int(res[hotctx.R_NOTHER])):
        k = hotctx.R_OTHERS + 3 * q
        others.append((int(res[k]), buf[res[k + 1]:res[k + 2]].tobytes()))
    return slot, res, sigs, others, buf


def test_chunk_when_many_frames_then_same_books_counters_signals_and_requests_as_per_frame():
    items = _stream(np.random.default_rng(3))
    # compile first: books older than max_book_age_ms at evaluation are refused, and a
    # first-time compile between `recv` and the call takes seconds
    _run_chunk(make_shared(), ws(b"{}"), 0)
    # the frames below are read-only arrays (np.frombuffer of bytes): their own specialisation
    pipeline.on_level2(np.frombuffer(b"{}", np.uint8), 0, 0, *make_shared().pipe_args)
    load_fair(make_shared())                  # (its snapshot kernel too: a cold cache compiles it)
    recv = time.monotonic_ns()
    # the reference: one pipeline.on_level2 call per level2 frame
    a = make_shared()
    a.hot_table.tab[hotctx.T_READ_AHEAD] = 1
    load_fair(a)
    a.control[1] = 0                                    # no retrigger interval here
    sig_a, snap_a, bad_a = [], [], []
    end = 0
    for name, data in items:
        end += len(ws(data))
        if name is None:
            continue
        a.counters[C["msgs"]] += 1
        a.counters[C["bytes"]] += len(data)
        a.counters[C["l2_msgs"]] += 1
        slot = pipeline.on_level2(np.frombuffer(data, np.uint8), sid(a, name), recv, *a.pipe_args)
        if a.pstate[pipeline.P_NEED_SNAP]:
            snap_a.append(sid(a, name))
        if slot == pipeline.BAD_FRAME:
            bad_a.append(data)
        if slot >= 0:
            sig_a.append((end, slot, int(a.sig_stage[0]["tri"]), int(a.sig_stage[0]["corr"])))
            slots.undo_acquire(a.slots, slot)
    # one chunk, with a partial frame at its end (held for the next read); each frame decided
    # before the next is parsed (read_ahead = 1: the per-frame order)
    b = make_shared()
    b.hot_table.tab[hotctx.T_READ_AHEAD] = 1
    load_fair(b)
    b.control[1] = 0
    chunk = b"".join(ws(d) for _, d in items)
    tail = ws(items[0][1])[:17]
    slot, res, sig_b, others, buf = _run_chunk(b, chunk + tail, recv)
    assert len(sig_a) >= 2 and snap_a and bad_a          # the stream exercises every path
    assert slot == pipeline.NO_SIGNAL and res[hotctx.R_POS] == len(chunk)
    assert res[hotctx.R_STATUS] == wsread.F_INCOMPLETE
    assert sig_b == sig_a
    assert list(res[hotctx.R_SNAPS:hotctx.R_SNAPS + res[hotctx.R_NSNAP]]) == snap_a
    assert buf[res[hotctx.R_BAD_START]:res[hotctx.R_BAD_END]].tobytes() == bad_a[-1]
    assert others == [(0x81, b'{"id":"7","type":"ack"}')]
    for x, y in zip(_fingerprint(a), _fingerprint(b)):
        assert np.array_equal(x, y, equal_nan=True) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else np.array_equal(x, y)


def test_chunk_when_unknown_symbol_no_topic_fragment_or_control_then_counted_or_handed_back():
    sh = make_shared()
    load_fair(sh)
    good = frame("BTC-USDT", 1001, 1001, bids=[["60000", "2", 1001]]).tobytes()
    unknown = good.replace(b"BTC-USDT", b"DOGE-USDT")
    no_topic = good.replace(b'"/market/level2:', b'"/market/other:')
    parts = [ws(unknown), ws(no_topic), ws(good[:50], fin=False),
             ws(good[50:], op=wsread.OP_CONT), ws(b"hi", op=wsread.OP_PING), ws(good)]
    slot, res, sigs, others, buf = _run_chunk(sh, b"".join(parts), 1)
    assert slot == pipeline.NO_SIGNAL and not sigs
    assert sh.counters[C["unknown_symbol"]] == 1
    assert sh.counters[C["bad_frames"]] == 1           # the frame without a readable topic
    assert buf[res[hotctx.R_BAD_START]:res[hotctx.R_BAD_END]].tobytes() == no_topic
    assert sh.counters[C["l2_msgs"]] == 1 and sh.counters[C["msgs"]] == 3
    assert sh.book_state[sid(sh, "BTC-USDT")]["seq"] == 1001
    # the fragments and the ping come back, in order, for hot.py to join and answer
    assert others == [(0x01, good[:50]), (0x80, good[50:]), (0x89, b"hi")]


def test_chunk_when_masked_frame_then_stream_error():
    sh = make_shared()
    slot, res, _, _, _ = _run_chunk(sh, bytes([0x81, 0x81]) + b"\0\0\0\0x", 1)
    assert slot == hotctx.STREAM_ERROR and res[hotctx.R_STATUS] == wsread.F_MASKED


def test_unpack_when_table_built_then_arrays_are_the_shared_arrays():
    sh = make_shared()
    got = hotctx.unpack(sh.hot_table.tab)
    import run
    want = run.pipe_args(sh)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            assert g.dtype == w.dtype and g.shape == w.shape
            assert g.ctypes.data == w.ctypes.data      # the same memory, not a copy
        else:
            assert g == w


def test_table_when_array_has_wrong_dtype_then_refused():
    sh = make_shared()
    sh.balances = sh.balances.astype(np.float32)
    with pytest.raises(ValueError, match="balances"):
        hotctx.Table(sh, topics.SymbolTable(sh.universe.symbols))


def _order_events():
    """The real orderChange captures (docs/kucoin.md 4.1: match, filled, canceled) and one
    account.balance, as the private link delivers them."""
    import json
    from pathlib import Path
    path = Path(__file__).parent / "data" / "ws-samples-2025-12_2026-01.jsonl"
    msgs = [json.loads(line)["msg"] for line in open(path)]
    orders = [m for m in msgs if m.get("subject") == "orderChange"]
    balance = next(m for m in msgs if m.get("subject") == "account.balance") if any(
        m.get("subject") == "account.balance" for m in msgs) else {
        "type": "message", "topic": "/account/balance", "subject": "account.balance",
        "data": {"currency": "USDT", "available": "1", "hold": "0", "total": "1"}}
    return orders, balance


def test_chunk_when_private_events_then_routed_in_kernel_until_terminal_event():
    import json
    import privwire
    import rings
    sh = make_shared()
    orders, balance = _order_events()
    match = next(m for m in orders if m["data"]["type"] == "match")
    filled = next(m for m in orders if m["data"]["type"] == "filled")
    corr = 0x6b0640e8000001
    ours = []
    for m in (match, match, filled):
        m = json.loads(json.dumps(m))
        m["data"]["clientOid"] = rings.client_oid(corr, 1, 0)
        ours.append(json.dumps(m, separators=(",", ":")).encode())
    foreign = json.loads(json.dumps(match))
    foreign["data"]["clientOid"] = "5c52e11203aa677f33e493fc"
    foreign = json.dumps(foreign).encode()
    bal = json.dumps(balance).encode()
    sh.slots[1]["corr"] = corr          # slot 1 runs this signal (the hot thread acquired it)
    chunk = ws(ours[0]) + ws(bal) + ws(foreign) + ws(ours[1]) + ws(ours[2])
    buf = np.zeros(len(chunk), np.uint8)
    buf[:] = np.frombuffer(chunk, np.uint8)
    res = hotctx.alloc_result()
    st = hotctx.hot_chunk(sh.hot_table.tab, buf, len(buf), 5, res)
    # the two matches went straight to slot 1's fill ring; the filled event comes back
    assert st == hotctx.FILL_EVENT and res[hotctx.R_POS] == len(chunk)
    assert res[hotctx.R_FILL_SLOT] == 1 and res[hotctx.R_FILL_STATUS] == hotctx.ROUTED_WAKE
    rbuf, rctl = sh.fill_rings[1]
    got = np.zeros(3, rings.FILL_DTYPE)
    assert rings.ring_pop_many(rbuf, rctl, got) == 3
    for frame_bytes, rec in zip(ours, got):
        ref = np.zeros(1, rings.FILL_DTYPE)
        assert privwire.parse_order_change(np.frombuffer(frame_bytes, np.uint8), ref,
                                           privwire.raw_view(ref), 5, 2) == 1
        assert rec.tobytes() == ref[0].tobytes()
    assert [int(k) for k in got["kind"]] == [rings.FILL_MATCH, rings.FILL_MATCH, rings.FILL_FILLED]
    # the hot thread's totals of leg 0's matches (they size leg 1)
    sz, px = float(got[0]["match_sz"]), float(got[0]["match_px"])
    assert sh.hot_acc_corr[1] == corr
    assert sh.hot_acc[1, 0, 0] == sz + sz and sh.hot_acc[1, 0, 1] == px * sz + px * sz
    assert sh.counters[C["fills_routed"]] == 3 and sh.counters[C["private_msgs"]] == 3
    # the balance and the foreign order are handed back, in order
    others = [buf[res[hotctx.R_OTHERS + 3 * q + 1]:res[hotctx.R_OTHERS + 3 * q + 2]].tobytes()
              for q in range(int(res[hotctx.R_NOTHER]))]
    assert others == [bal, foreign]


def test_alloc_result_when_new_then_ready_for_a_first_buffer():
    res = hotctx.alloc_result()
    assert (res[hotctx.R_POS], res[hotctx.R_NOTHER], res[hotctx.R_NSNAP], res[hotctx.R_BAD_START]) == (0, 0, 0, -1)


def test_route_fill_when_event_of_another_signal_then_totals_of_the_one_in_flight_kept():
    """A late event of an earlier triangle of the slot (or garbage naming the slot) reaches
    the ring, where the executor logs it as a stray, but never resets or adds to the running
    totals that size the next leg of the triangle in flight."""
    import json
    import rings
    sh = make_shared()
    orders, _ = _order_events()
    match = next(m for m in orders if m["data"]["type"] == "match")
    cur, old = 0x6b0640e8000002, 0x6b0640e8000001
    sh.slots[1]["corr"] = cur

    def event(corr):
        m = json.loads(json.dumps(match))
        m["data"]["clientOid"] = rings.client_oid(corr, 1, 0)
        return ws(json.dumps(m, separators=(",", ":")).encode())

    chunk = event(cur) + event(old) + event(cur)
    buf = np.frombuffer(chunk, np.uint8).copy()
    res = hotctx.alloc_result()
    assert hotctx.hot_chunk(sh.hot_table.tab, buf, len(buf), 5, res) == pipeline.NO_SIGNAL
    sz = float(match["data"]["matchSize"])
    assert sh.hot_acc_corr[1] == cur and sh.hot_acc[1, 0, 0] == sz + sz
    rbuf, rctl = sh.fill_rings[1]
    got = np.zeros(4, rings.FILL_DTYPE)
    assert rings.ring_pop_many(rbuf, rctl, got) == 3
    assert [int(c) for c in got["corr"][:3]] == [cur, old, cur]


# -- keep-warm of the kernel (hotctx.KernelWarm) ---------------------------------------------------

def _all_shared(sh) -> dict:
    """Every shared array's contents, field by field (a structured copy's padding bytes are
    not data), those held in lists and tuples too (rings: (buffer, control) pairs)."""
    out = {}

    def add(name, v):
        if isinstance(v, np.ndarray):
            out[name] = [v[f].tobytes() for f in v.dtype.names] if v.dtype.names else v.tobytes()
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                add(f"{name}[{i}]", x)
    for name, v in vars(sh).items():
        add(name, v)
    assert "opp_ring[1]" in out and "fill_rings[0][1]" in out
    return out


def test_kernel_warm_when_run_then_whole_path_runs_on_copies_and_no_shared_array_changes():
    sh = make_shared()
    load_fair(sh)
    kw = hotctx.KernelWarm(sh)
    assert not kw.ready
    before = _all_shared(sh)
    assert kw.refresh() and kw.ready
    staged = [kw.run_once() for _ in range(12)]
    after = _all_shared(sh)
    for name, v in before.items():
        assert v == after[name], f"KernelWarm wrote the shared array {name}"
    # every pass ran the whole way: the lifted book gives the triangles that sell its symbol
    # an edge, so each pass searched in depth, picked a slot and staged a signal (copies)
    assert all(s >= 0 for s in staged), staged
    assert kw.sc.counters[C["evals"]] == 12
    assert kw.sc.evc[triangles.EVC_CANDIDATES] >= 12
    # the copies' books took one update per pass and stay synced
    for name in NAMES:
        s = sid(sh, name)
        assert kw.sc.book_state[s]["status"] == books.BOOK_SYNCED
        assert kw.sc.book_state[s]["seq"] == sh.book_state[s]["seq"] + 1


def test_kernel_warm_when_no_book_synced_then_not_ready():
    sh = make_shared()
    kw = hotctx.KernelWarm(sh)
    assert not kw.refresh() and not kw.ready


def _one_read(read_ahead, names_and_frames, recv):
    """A fresh set of fair books, then one read holding the frames: (first hot_chunk return,
    evaluations run before it, every signal of the read as (slot, triangle), the shared set)."""
    sh = make_shared()
    load_fair(sh)
    sh.control[1] = 0
    sh.hot_table.tab[hotctx.T_READ_AHEAD] = read_ahead
    chunk = b"".join(ws(f) for f in names_and_frames)
    buf = np.zeros(len(chunk) + 16, np.uint8)
    buf[:len(chunk)] = np.frombuffer(chunk, np.uint8)
    res = hotctx.alloc_result()
    first = hotctx.hot_chunk(sh.hot_table.tab, buf, len(chunk), recv, res)
    evals_first = int(sh.counters[C["evals"]])
    sigs, slot = [], first
    while slot >= 0:
        sigs.append((slot, int(sh.sig_stage[0]["tri"])))
        slots.undo_acquire(sh.slots, slot)
        slot = hotctx.hot_chunk(sh.hot_table.tab, buf, len(chunk), recv, res)
    assert slot == pipeline.NO_SIGNAL and res[hotctx.R_POS] == len(chunk)
    return first, evals_first, sigs, sh


def test_read_ahead_when_mispricing_completes_behind_other_frames_then_signalled_on_the_first_decision():
    """docs/design.md 6.1: frames of other symbols ahead of the one that completes a mispricing
    in the same read are applied, not searched, before it: the signal comes from the first
    decision, on books holding the whole read; per-frame, two searches come first."""
    _run_chunk(make_shared(), ws(b"{}"), 0)          # compile (and the snapshot kernel) first
    load_fair(make_shared())
    seq = Seq()
    frames = []
    for name in ("BTC-USDT", "ETH-USDT"):
        s, e = seq(name)
        frames.append(frame(name, s, e, bids=[[FAIR[name][0][1][0], "3", e]]).tobytes())
    s, e = seq("ETH-BTC")
    frames.append(frame("ETH-BTC", s, e, asks=[["0.049", "5", e]]).tobytes())
    recv = time.monotonic_ns()
    first1, evals1, sigs1, sh1 = _one_read(1, frames, recv)
    first16, evals16, sigs16, sh16 = _one_read(16, frames, recv)
    assert first1 >= 0 and first16 >= 0
    assert evals1 == 3 and evals16 == 1
    assert [t for _, t in sigs16][:1] == [t for _, t in sigs1][:1]
    a, b = sh1.book_state.copy(), sh16.book_state.copy()
    a["recv_ns"] = b["recv_ns"] = 0
    assert np.array_equal(a, b)                                        # the books
    assert np.array_equal(sh1.book_px, sh16.book_px, equal_nan=True)
    assert np.array_equal(sh1.book_sz, sh16.book_sz, equal_nan=True)


def test_read_ahead_when_mispricing_taken_within_the_same_read_then_not_signalled():
    """A cheap ask and the frame that takes it in one read: per-frame the first is decided
    alone and signals; with read-ahead the decision sees the ask already gone (the books as
    the venue last showed them) and nothing is fired at it. The symbol is searched once."""
    load_fair(make_shared())
    seq = Seq()
    s, e = seq("ETH-BTC")
    s2, e2 = seq("ETH-BTC")
    frames = [frame("ETH-BTC", s, e, asks=[["0.049", "5", e]]).tobytes(),
              frame("ETH-BTC", s2, e2, asks=[["0.049", "0", e2]]).tobytes()]
    recv = time.monotonic_ns()
    first1, _, sigs1, _ = _one_read(1, frames, recv)
    first16, evals16, sigs16, sh16 = _one_read(16, frames, recv)
    assert first1 >= 0 and sigs1
    assert first16 == pipeline.NO_SIGNAL and not sigs16
    assert evals16 == 1 and sh16.counters[C["applied"]] == 2 and sh16.counters[C["l2_msgs"]] == 2


def test_touch_real_when_run_then_reads_every_table_and_writes_nothing():
    """KernelWarm's read of the real arrays (warm_books) must never write them: the hot
    thread's books are read by other threads."""
    sh = make_shared()
    load_fair(sh)
    uni = sh.universe
    before = [a.copy() for a in (sh.book_px, sh.book_sz, sh.book_state, uni.tris, uni.sym_tri_start,
                                 uni.sym_tri_list)]
    v = hotctx.touch_real(sh.book_px, sh.book_sz, sh.book_state, uni.tris, uni.sym_tri_start,
                          uni.sym_tri_list)
    assert v > 0
    after = (sh.book_px, sh.book_sz, sh.book_state, uni.tris, uni.sym_tri_start, uni.sym_tri_list)
    for b, a in zip(before, after):
        assert np.array_equal(b, a, equal_nan=True) if b.dtype.kind == "f" else np.array_equal(b, a)


def test_kernel_warm_when_kernel_writes_leg0_then_its_copies_never_write():
    """leg0_send = kernel: the real arrays name a live descriptor and switch the write on;
    KernelWarm stages signals on copies of them, which must never reach that socket."""
    import socket
    sh = make_shared()
    load_fair(sh)
    a, b = socket.socketpair()
    try:
        import executor
        from signer import Signer
        assert orderkern.fill(vars(sh), executor.leg_plans(sh.universe), Signer("k", "s", "p", 3),
                              b"/api/v1/hf/orders", b"h:1", True) == sh.universe.ntri
        sh.ok_info["fd"] = a.fileno()
        sh.ok_ctl[orderkern.C_SEND] = 1
        kw = hotctx.KernelWarm(sh)
        assert (kw.sc.ok_info["fd"] == -1).all() and kw.sc.ok_ctl[orderkern.C_SEND] == 0
        assert kw.refresh()
        assert all(kw.run_once() >= 0 for _ in range(6))
        assert (kw.sc.ok_info["len"] > 0).any()    # the copies did build requests
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)
    finally:
        a.close()
        b.close()
