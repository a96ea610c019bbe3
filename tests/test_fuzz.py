"""Fuzz: no byte sequence on either link may stop the hot thread or corrupt its state.

In-process and seeded (random.Random; hypothesis would add a dependency for little here: the
interesting inputs are structured - KuCoin frames with one field broken - and a seeded
generator of those reproduces a failure from its seed just as well).

1. Kernels (l2wire.parse_l2, privwire.parse_order_change, wsread.next_frame,
   topics.level2_symbol) on thousands of malformed inputs: they return one of their
   documented statuses, never raise. The same inputs once more with NUMBA_DISABLE_JIT=1 in a
   subprocess, over arrays that raise on any index outside them (negative ones included,
   which numpy would wrap): no kernel reads out of bounds.
2. The hot thread's production entry, HotLoop._drain (socket read -> FrameReader ->
   HotLoop._chunk -> hotctx.hot_chunk and the Python path), over a socketpair, for the public
   and the private link: thousands of frames, each labelled with what it must do (count
   exactly one bad frame / none / either), from random bytes, deep nesting, huge integers,
   wrong types, NaN-like text, truncated JSON, absurd and inconsistent sequences, valid
   JSON with wrong field types, orderChange frames with our clientOid and garbage fields,
   fragmented garbage, and raw random byte streams (any framing). After every frame: no
   internal error (hot_errors stays 0), the bad-frame count matches the label, books stay
   sorted with positive levels, nothing impossible reaches a fill ring. At the end the books
   resync from snapshots, equal them, and a mispricing still fires leg 0.
3. The order path's guard: an exception while firing leg 0 or the next leg is counted,
   logged with slot and corr, and the signal still reaches the executor.

Run: python -m pytest -q tests/test_fuzz.py (~10 s warm).
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

import books
import hot
import l2wire
import pipeline
import privwire
import rings
import slots as slotmod
import topics
import wsread
from test_pipeline import FAIR, NAMES, SEQ0, StubMaint, frame, load_fair, make_shared, sid, snap_record

C = pipeline.C
ROOT = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("FUZZ_SEED", "20260517"))
OID_OURS = "ta6b0640e8000001s1l0"


# ---- the corpus -------------------------------------------------------------------------------

def _l2(name, start, end, asks=(), bids=(), **extra):
    d = {"changes": {"asks": [list(map(str, c)) for c in asks],
                     "bids": [list(map(str, c)) for c in bids]},
         "sequenceEnd": end, "sequenceStart": start, "symbol": name, "time": 1_700_000_000_500}
    d.update(extra)
    return {"type": "message", "topic": f"/market/level2:{name}", "subject": "trade.l2update",
            "data": d}


def _dump(o) -> bytes:
    return json.dumps(o, separators=(",", ":")).encode()


def _rand_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def _nest(rng):
    k = rng.randint(1025, 4000)
    o, c = rng.choice([("[", "]"), ('{"a":', "}")])
    tail = "1" if o != "[" else ""
    return (o * k + tail + c * k).encode()


NAN_LIKE = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "--1", "0x10", "1.2.3", "",
            "1e", "١٢", " 1", "+1", "9" * 40, "0." + "0" * 30 + "1"]


def public_corpus(rng, n):
    """[(label, payload bytes, opcode, fin-split)]: label 'bad' = exactly one bad frame,
    'ok' = none, 'any' = zero or one (random content)."""
    out = []
    seq = dict(SEQ0)
    for _ in range(n):
        name = rng.choice(NAMES)
        s = seq[name] + rng.randint(-5, 5)
        kind = rng.randrange(20)
        if kind == 0:
            out.append(("bad", b'{"type":"pong","id":1' + b"2" * rng.randint(20, 60) + b"}"))
        elif kind == 1:
            out.append(("bad", _nest(rng)))
        elif kind == 2:
            out.append(("any", _rand_bytes(rng, rng.randint(0, 400))))
        elif kind == 3:                     # truncated level2 frame (its topic or subject cut, or JSON)
            f = _dump(_l2(name, s, s, bids=[["1", "1", s]]))
            out.append(("bad", f[:rng.randint(0, len(f) - 1)]))
        elif kind == 4:                     # inconsistent / absurd sequences: rejected in any state
            bad = rng.choice([
                dict(start=s + 1, end=s, q=s), dict(start=-3, end=s, q=s),
                dict(start=s, end=s + 10 ** rng.randint(6, 17), q=s),
                dict(start=s, end=s + 2, q=s + 3), dict(start=s, end=s + 2, q=s - 1)])
            out.append(("bad", _dump(_l2(name, bad["start"], bad["end"],
                                         asks=[["1", "2", bad["q"]]]))))
        elif kind == 5:                     # negative price or size
            px, sz = rng.choice([("-1", "1"), ("1", "-1"), ("-0.5", "-0.5")])
            out.append(("bad", _dump(_l2(name, s, s, bids=[[px, sz, s]]))))
        elif kind == 6:                     # NaN-like or out-of-range number text
            t = rng.choice(NAN_LIKE)
            ch = [t, "1", s] if rng.random() < 0.5 else ["1", t, s]
            out.append(("bad", _dump(_l2(name, s, s, asks=[ch]))))
        elif kind == 7:                     # valid JSON, wrong field types in level2
            d = _l2(name, s, s, asks=[["1", "1", s]])
            k = rng.randrange(6)
            if k == 0:
                d["data"]["sequenceStart"] = "abc"
            elif k == 1:
                d["data"]["changes"] = [1, 2]
            elif k == 2:
                d["data"]["changes"]["asks"] = [[["1"], "1", s]]
            elif k == 3:
                d["data"]["sequenceEnd"] = {"x": 1}
            elif k == 4:
                del d["data"]["sequenceEnd"]
            else:
                d["data"]["changes"]["bids"] = [["1", "1", str(s) + ".5"]]
            out.append(("bad", _dump(d)))
        elif kind == 8:                     # huge sequences: more than 18 digits
            big = int("9" * rng.randint(19, 30))
            out.append(("bad", _dump(_l2(name, big, big, asks=[["1", "1", big]]))))
        elif kind == 9:                     # a plausible frame: applied, stale, or a gap (not bad)
            q = rng.randint(s, s + 3)
            out.append(("ok", _dump(_l2(name, s, q, asks=[[FAIR[name][1][0][0], str(rng.randint(1, 9)), q]]))))
        elif kind == 10:                    # unknown symbol
            out.append(("ok", _dump(_l2("DOGE-USDT", s, s, asks=[["1", "1", s]]))))
        elif kind == 11:                    # control frames with odd fields (harmless)
            out.append(("ok", rng.choice([b'{"type":"ack","id":[1,{"a":null}]}',
                                          b'{"type":"pong","id":"p0"}', b'{"type":"welcome"}',
                                          b'{"type":"error","code":"x","data":' + b'"e" ' * 0 + b'[1]}',
                                          b'{"type":"notice","data":' + b"1" * 18 + b"}"])))
        elif kind == 12:                    # JSON of other types, unknown types and subjects
            out.append(("bad", rng.choice([b"[1,2,3]", b'"str"', b"null", b"12345", b"true",
                                           b'{"type":{"nested":1}}', b'{"type":"message","subject":7}',
                                           b'{"type":"message","subject":"trade.ticker","data":{}}',
                                           b'{"type":"message","subject":"trade.l2update","data":{}}'])))
        elif kind == 13:                    # level2 subject without a readable topic
            d = _l2(name, s, s)
            d["topic"] = rng.choice(["/market/level2:", "", 5, "/market/level2"])
            out.append(("bad", _dump(d)))
        elif kind == 14:                    # invalid UTF-8 inside strings
            out.append(("bad", b'{"type":"pong","id":"\xff\xfe' + _rand_bytes(rng, 8).replace(b'"', b"x") + b'"}'))
        elif kind == 15:                    # random bytes inside a level2 frame's data
            f = bytearray(_dump(_l2(name, s, s, bids=[["1", "2", s]])))
            i = f.index(b'"data"') + 8
            for _ in range(rng.randint(1, 6)):
                j = rng.randrange(i, len(f))
                f[j] = rng.getrandbits(8)
            out.append(("any", bytes(f)))
        elif kind == 16:                    # a huge but valid price: parsed, applied only if in sequence
            out.append(("any", _dump(_l2(name, s, s, bids=[["9" * 17, "1", s]]))))
        elif kind == 17:                    # too many changes for the parser's array
            out.append(("bad", _dump(_l2(name, s, s, asks=[["1", "1", s]] * 1100))))
        elif kind == 18:                    # a frame far ahead of its book (a gap or a jump)
            q = s + rng.choice([10, 10 ** 6, 10 ** 15])
            out.append(("any", _dump(_l2(name, q, q, asks=[["1", "1", q]]))))
        else:                               # whitespace, duplicated keys, odd order: still JSON
            out.append(("any", b'  {"data":{"sequenceEnd":1},"data":{},"subject":"trade.l2update",'
                               b'"topic":"/market/level2:' + name.encode() + b'"} '))
    return out


def private_corpus(rng, n):
    out = []
    base = {"type": "message", "topic": "/spotMarket/tradeOrdersV2", "subject": "orderChange",
            "channelType": "private",
            "data": {"clientOid": OID_OURS, "orderId": "6" * 24, "type": "match", "symbol": "BTC-USDT",
                     "side": "buy", "matchPrice": "60000", "matchSize": "0.001", "filledSize": "0.001",
                     "remainSize": "0", "tradeId": "7" * 20, "ts": 1_700_000_000_000_000_000}}
    for _ in range(n):
        d = json.loads(json.dumps(base))
        dd = d["data"]
        kind = rng.randrange(12)
        if kind == 0:                       # ours, impossible numbers
            dd[rng.choice(["matchPrice", "matchSize", "filledSize", "remainSize"])] = rng.choice(["-1", "-0.001"])
            out.append(("bad", _dump(d)))
        elif kind == 1:                     # ours, NaN-like text in a number
            dd[rng.choice(["matchPrice", "matchSize"])] = rng.choice(NAN_LIKE[:9])
            out.append(("bad", _dump(d)))
        elif kind == 2:                     # ours, wrong types
            k = rng.choice(["matchPrice", "matchSize", "type", "ts", "orderId"])
            dd[k] = rng.choice([{"a": 1}, [1, 2], None, True]) if k != "type" else rng.choice([5, None, ["match"]])
            # orderId and ts do not size anything: null/true there may read as absent
            out.append(("bad" if k not in ("orderId", "ts") else "any", _dump(d)))
        elif kind == 3:                     # ours, a match without price or size
            del dd[rng.choice(["matchPrice", "matchSize"])]
            out.append(("bad", _dump(d)))
        elif kind == 4:                     # ours, unknown (routed as such) or missing event type
            if rng.random() < 0.5:
                dd["type"] = "explode"
                out.append(("ok", _dump(d)))
            else:
                del dd["type"]
                out.append(("bad", _dump(d)))
        elif kind == 5:                     # our prefix, malformed route: foreign (or bad)
            dd["clientOid"] = rng.choice(["ta", "taXs1l0", "ta6bs99l0", "ta6bs1l7", "ta" + "f" * 40 + "s0l0",
                                          "ta6bs1l0" + "\x00", 12345])
            out.append(("bad" if not isinstance(dd["clientOid"], str) else "ok", _dump(d)))
        elif kind == 6:                     # ours, huge numbers
            dd[rng.choice(["matchSize", "ts"])] = int("9" * rng.randint(25, 40))
            out.append(("bad", _dump(d)))
        elif kind == 7:                     # truncated
            f = _dump(d)
            out.append(("bad", f[:rng.randint(0, len(f) - 1)]))
        elif kind == 8:                     # balance frames with garbage
            av = rng.choice(["NaN", "-5", "inf", [1], None, "1e999", "abc"])
            out.append(("bad", _dump({"type": "message", "subject": "account.balance",
                                      "data": {"currency": "USDT", "available": av}})))
        elif kind == 9:                     # a balance of a currency outside the universe (counted, ok)
            out.append(("ok", _dump({"type": "message", "subject": "account.balance",
                                     "data": {"currency": "Z" * rng.randint(1, 300), "available": "1"}})))
        elif kind == 10:                    # the killers
            out.append(("bad", rng.choice([b'{"type":"pong","id":123456789012345678901234567890}',
                                           b"[" * 1025 + b"]" * 1025])))
        else:
            out.append(("any", _rand_bytes(rng, rng.randint(0, 300))))
    return out


# ---- 1. kernels -------------------------------------------------------------------------------

def kernel_inputs(seed: int, n: int):
    rng = random.Random(seed)
    frames = [p for _, p in public_corpus(rng, n)] + [p for _, p in private_corpus(rng, n // 2)]
    frames += [_rand_bytes(rng, rng.randint(0, 64)) for _ in range(n // 4)]
    # WebSocket headers: random, and every length encoding with lies
    heads = [_rand_bytes(rng, rng.randint(0, 16)) for _ in range(n // 4)]
    heads += [bytes([0x81, 127]) + (1 << k).to_bytes(8, "big") + b"x" for k in range(0, 64, 3)]
    heads += [bytes([0x81, 126, 0xFF]), bytes([0x81, 0xFE, 0, 10]) + b"\0" * 14, bytes([0x81])]
    return frames, heads


L2_CODES = {l2wire.W_TRUNCATED, l2wire.W_SYNTAX, l2wire.W_NUMBER, l2wire.W_MISSING, l2wire.W_TOO_MANY}


def check_kernels(frames, heads, wrap=None):
    """Run every kernel over the inputs; `wrap` turns a uint8 array into the array the kernels
    see. Returns a summary of the statuses (the caller compares JIT and no-JIT)."""
    wrap = wrap or (lambda a: a)
    changes, hdr = l2wire.alloc_changes(), l2wire.alloc_l2hdr()
    dst = np.zeros(1, rings.FILL_DTYPE)
    raw = privwire.raw_view(dst)
    table = topics.SymbolTable(list(NAMES))
    summary = []
    for f in frames:
        buf = wrap(np.frombuffer(f, np.uint8).copy())
        n = l2wire.parse_l2(buf, changes, hdr)
        assert n >= 0 or n in L2_CODES, n
        assert n <= changes.shape[0]
        o = privwire.parse_order_change(buf, dst, raw, 1, 2)
        assert o in (privwire.OC_BAD, privwire.OC_FOREIGN, 0, 1), o
        t = topics.level2_symbol(buf, 0, len(f), table.slots, table.names, table.lens)
        assert -3 <= t < len(NAMES), t
        summary.append((int(n), int(o), int(t)))
    for h in heads:
        buf = wrap(np.frombuffer(h, np.uint8).copy())
        for pos in range(0, min(len(h), 3)):
            st, b0, s, e = wsread.next_frame(buf, pos, len(h))
            assert st in (wsread.F_OK, wsread.F_INCOMPLETE, wsread.F_MASKED, wsread.F_TOO_BIG)
            if st == wsread.F_OK:
                assert pos <= s <= e <= len(h)
            summary.append((int(st), int(s), int(e)))
    return summary


def test_kernels_when_thousands_of_malformed_inputs_then_statuses_only():
    frames, heads = kernel_inputs(SEED, 2000)
    got = check_kernels(frames, heads)
    codes = {x[0] for x in got[:len(frames)]}
    assert L2_CODES <= codes                            # every parser error was exercised
    assert len(got) > 3000


class Strict(np.ndarray):
    """An array that raises IndexError for any index outside it (numpy wraps negative ones):
    run under NUMBA_DISABLE_JIT=1 the kernels index it from Python."""

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"index {i} outside [0, {self.shape[0]})")
        elif isinstance(i, slice):
            for v in (i.start, i.stop):
                if v is not None and not 0 <= v <= self.shape[0]:
                    raise IndexError(f"slice bound {v} outside [0, {self.shape[0]}]")
        return super().__getitem__(i)


def test_kernels_when_run_without_jit_on_strict_arrays_then_no_read_out_of_bounds():
    script = (
        "import sys; sys.path[:0] = [%r, %r]\n"
        "import numpy as np, test_fuzz as T, l2wire\n"
        "assert l2wire.parse_l2.__class__.__name__ == 'function'\n"
        "frames, heads = T.kernel_inputs(T.SEED, 300)\n"
        "s = T.check_kernels(frames, heads, wrap=lambda a: a.view(T.Strict))\n"
        "print(len(s), hash(tuple(s)))\n" % (str(ROOT), str(Path(__file__).parent)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    frames, heads = kernel_inputs(SEED, 300)
    jit = check_kernels(frames, heads)
    assert res.stdout.split() == [str(len(jit)), str(hash(tuple(jit)))]   # and the same answers


# ---- 2. the hot thread's entry ------------------------------------------------------------------

def ws_frame(payload: bytes, op=wsread.OP_TEXT, fin=True) -> bytes:
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        return bytes([b0, n]) + payload
    if n < 65536:
        return bytes([b0, 126]) + n.to_bytes(2, "big") + payload
    return bytes([b0, 127]) + n.to_bytes(8, "big") + payload


class FakeWs:
    def __init__(self):
        self.pongs = 0
        self.closed = False

    def pong(self, data):
        self.pongs += 1

    def close(self, timeout=0):
        self.closed = True

    def send(self, text):
        pass


class StubExecutor:
    def __init__(self, fail_leg0=False, fail_next=False):
        self.fired, self.next_calls = 0, 0
        self.fail_leg0, self.fail_next = fail_leg0, fail_next

    def fire_leg0(self):
        self.fired += 1
        if self.fail_leg0:
            raise RuntimeError("boom in fire_leg0")

    def fire_next_from_hot(self, corr, leg, filled_sz, filled_funds, term_sz):
        self.next_calls += 1
        if self.fail_next:
            raise KeyError("boom in fire_next_from_hot")
        return False

    def warm(self, tri):
        return 0


class Rig:
    """A HotLoop over run.allocate's arrays (three symbols), each link a socketpair whose
    far end the test writes to; _drain reads it as the hot thread does after epoll."""

    def __init__(self, **exec_kw):
        self.sh = make_shared()
        load_fair(self.sh)
        self.lines = []
        cfg = types.SimpleNamespace(fire_from="hot", warm_interval_us=0, busy_poll_us=0)
        self.execs = [StubExecutor(**exec_kw) for _ in range(len(self.sh.slots))]
        self.loop = hot.HotLoop(self.sh, StubMaint(), self.execs, cfg, self.lines.append)
        self.links = {}
        for kind in ("public", "private"):
            self.new_link(kind)

    def new_link(self, kind):
        a, b = socket.socketpair()
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        link = types.SimpleNamespace(kind=kind, connect_id=f"c-{kind}", ping_id="p1", pending_acks={},
                                     symbols=list(self.sh.universe.symbols) if kind == "public" else [],
                                     alive=True, fd=a.fileno(), pong_deadline=0.0, ws=FakeWs())
        link.reader = wsread.FrameReader(a)
        link.sock, link.peer = a, b
        self.links[kind] = link
        return link

    def send(self, kind, data: bytes) -> bool:
        """Write bytes to the link and let the hot thread read them to the last byte, as
        epoll would have it do. False when the link died (a fresh one replaces it)."""
        link = self.links[kind]
        link.peer.sendall(data)
        while link.alive:
            self.loop._drain(link)
            if _peek_nonblocking(link.sock) is None:
                break
        if not link.alive:
            link.sock.close()
            link.peer.close()
            self.new_link(kind)
            return False
        return True

    def reconnect(self, kind):
        link = self.links[kind]
        self.loop._close(link, "test: peer gone")
        link.sock.close()
        link.peer.close()
        self.new_link(kind)

    def close(self):
        for link in self.links.values():
            link.sock.close()
            link.peer.close()
        self.loop.ep.close()

    def settle_rings(self):
        """What executors do between frames: take the signals, release the slots."""
        sh = self.sh
        out = np.zeros(1, rings.SIGNAL_DTYPE)
        for k, (buf, ctrl) in enumerate(sh.sig_rings):
            while rings.ring_pop(buf, ctrl, out, 0):
                pass
            if slotmod.is_busy(sh.slots, k):
                slotmod.release(sh.slots, k)
        got = np.zeros(64, rings.FILL_DTYPE)
        for buf, ctrl in sh.fill_rings:
            while True:
                n = rings.ring_pop_many(buf, ctrl, got)
                if n == 0:
                    break
                check_fill_records(got[:n])


def _peek_nonblocking(sock):
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


def check_fill_records(recs):
    for r in recs:
        for f in ("match_px", "match_sz", "filled_sz", "remain_sz", "remain_funds"):
            v = float(r[f])
            assert np.isnan(v) or (v >= 0 and np.isfinite(v)), (f, v)
        if int(r["kind"]) == rings.FILL_MATCH:
            assert r["match_px"] > 0 and r["match_sz"] > 0


def check_books(sh):
    st, px, sz = sh.book_state, sh.book_px, sh.book_sz
    for i in range(len(st)):
        for side, key in ((books.SIDE_BID, "n_bid"), (books.SIDE_ASK, "n_ask")):
            n = int(st[i][key])
            assert 0 <= n <= px.shape[2]
            p, s = px[i, side, :n], sz[i, side, :n]
            assert (p > 0).all() and (s > 0).all() and np.isfinite(p).all() and np.isfinite(s).all()
            keys = -p if side == books.SIDE_BID else p
            assert (np.diff(keys) > 0).all()
            assert (sz[i, side, n:] == 0).all()
    assert np.isfinite(sh.hot_acc).all() and (sh.hot_acc >= 0).all()


def resync_all(rig):
    """The maintenance thread's part: a snapshot for every book at a sequence that covers
    whatever it buffered, so the snapshot is exactly what the book becomes."""
    sh = rig.sh
    seqs = {}
    for name in NAMES:
        i = sid(sh, name)
        b = sh.book_state[i]
        s = max(int(b["seq"]), int(b["pend_last"]), SEQ0[name]) + 1
        bids, asks = FAIR[name]
        assert pipeline.on_snapshot(snap_record(sh, name, s, bids, asks), *sh.snap_args) == 0
        assert sh.book_state[i]["status"] == books.BOOK_SYNCED
        seqs[name] = s
    return seqs


def assert_books_fair(sh):
    for name in NAMES:
        i = sid(sh, name)
        bids, asks = FAIR[name]
        for side, want in ((books.SIDE_BID, bids), (books.SIDE_ASK, asks)):
            n = int(sh.book_state[i]["n_bid" if side == books.SIDE_BID else "n_ask"])
            have = [(float(sh.book_px[i, side, k]), float(sh.book_sz[i, side, k])) for k in range(n)]
            assert have == [(float(p), float(s)) for p, s in want], (name, side)


def run_corpus(rig, kind, corpus, fragment_rng=None):
    cnt = rig.loop.counters
    seen = {"bad": 0, "ok": 0, "any": 0}
    for label, payload in corpus:
        before = cnt.copy()
        if fragment_rng is not None and len(payload) > 4 and fragment_rng.random() < 0.1:
            cut = fragment_rng.randint(1, len(payload) - 1)
            data = ws_frame(payload[:cut], fin=False) + ws_frame(payload[cut:], op=wsread.OP_CONT)
        else:
            op = wsread.OP_BINARY if fragment_rng is not None and fragment_rng.random() < 0.05 else wsread.OP_TEXT
            data = ws_frame(payload, op=op)
        assert rig.send(kind, data), (label, payload[:200])       # a frame never kills the link
        d = cnt - before
        assert d[C["hot_errors"]] == 0, (rig.lines[-3:], payload[:200])
        assert d[C["msgs"]] == 1, (label, payload[:200])        # each frame counted once
        bad = int(d[C["bad_frames"]])
        if label == "bad":
            assert bad == 1, (label, payload[:300], rig.lines[-2:])
        elif label == "ok":
            assert bad == 0, (label, payload[:300], rig.lines[-2:])
        else:
            assert bad in (0, 1), (label, payload[:300])
        seen[label] += 1
        rig.settle_rings()
    check_books(rig.sh)
    return seen


def test_hot_drain_when_thousands_of_malformed_frames_on_both_links_then_counted_and_still_trading():
    rng = random.Random(SEED)
    rig = Rig()
    try:
        sh, cnt = rig.sh, rig.loop.counters
        pub = public_corpus(rng, 3000)
        priv = private_corpus(rng, 1500)
        seen_pub = run_corpus(rig, "public", pub, fragment_rng=random.Random(SEED + 1))
        seen_priv = run_corpus(rig, "private", priv, fragment_rng=random.Random(SEED + 2))
        assert seen_pub["bad"] > 1500 and seen_priv["bad"] > 700
        assert cnt[C["hot_errors"]] == 0 and cnt[C["seq_rejects"]] > 100
        assert cnt[C["reconnects"]] == 0                     # no frame closed a link
        # raw byte streams in any framing, each on a link of its own: one the reader finds
        # broken (masked, oversized, a close frame, a stray continuation) closes its link;
        # the others may leave a partial frame behind, so the test ends those links itself
        closed = 0
        for k in range(300):
            kind = rng.choice(["public", "private"])
            head = rng.choice([b"", bytes([0x81]), bytes([0x81, 126]), bytes([0x88, 2]), bytes([0x01, 5])])
            if rig.send(kind, head + _rand_bytes(rng, rng.randint(0, 200))):
                rig.reconnect(kind)
            else:
                closed += 1
            assert cnt[C["hot_errors"]] == 0, rig.lines[-3:]
            assert cnt[C["reconnects"]] == k + 1
            rig.settle_rings()
        assert closed > 20
        check_books(sh)
        # still trading: the books resync from snapshots, equal them, and a mispricing fires
        seqs = resync_all(rig)
        assert_books_fair(sh)
        fired = sum(e.fired for e in rig.execs)
        s = seqs["ETH-BTC"] + 1
        assert rig.send("public", ws_frame(frame("ETH-BTC", s, s, asks=[["0.049", "5", s]]).tobytes()))
        assert sum(e.fired for e in rig.execs) == fired + 1, (rig.lines[-5:], cnt)
        assert rig.sh.book_state[sid(sh, "ETH-BTC")]["seq"] == s
        # the engine's error lines say "hot: ERROR"; a logged bad frame can hold "ERROR" too
        # (simdjson's "UTF8_ERROR" for a random frame that is not UTF-8: the flake once seen)
        errs = [x for x in rig.lines if "hot: ERROR" in x]
        assert not errs, errs[:3]
    finally:
        rig.close()


# ---- 3. the order path's guard --------------------------------------------------------------------

def test_order_path_when_firing_leg0_raises_then_counted_logged_with_slot_corr_and_signal_pushed():
    rig = Rig(fail_leg0=True)
    try:
        sh = rig.sh
        s = SEQ0["ETH-BTC"] + 1
        assert rig.send("public", ws_frame(frame("ETH-BTC", s, s, asks=[["0.049", "5", s]]).tobytes()))
        cnt = rig.loop.counters
        assert cnt[C["hot_errors"]] == 1 and cnt[C["fired_leg0"]] == 0 and cnt[C["signals"]] == 1
        corr = int(sh.sig_stage[0]["corr"])
        slot = next(k for k in range(len(sh.slots)) if slotmod.is_busy(sh.slots, k))
        line = [x for x in rig.lines if "hot: ERROR" in x][-1]
        assert f"firing leg 0 (slot {slot} corr {corr:x})" in line and "RuntimeError: boom" in line
        buf, ctrl = sh.sig_rings[slot]
        assert rings.ring_count(buf, ctrl) == 1              # the executor gets the signal
    finally:
        rig.close()


def test_order_path_when_firing_next_leg_raises_then_counted_logged_and_executor_woken():
    rig = Rig(fail_next=True)
    try:
        sh = rig.sh
        corr = 0x6b0640e8000001
        sh.slots[1]["corr"] = corr
        filled = _dump({"type": "message", "subject": "orderChange", "data": {
            "clientOid": OID_OURS, "orderId": "6" * 24, "type": "filled", "symbol": "BTC-USDT",
            "filledSize": "0.001", "remainSize": "0", "ts": 1}})
        if _readable(sh.slot_fds[1]):
            os.eventfd_read(sh.slot_fds[1])
        assert rig.send("private", ws_frame(filled))
        cnt = rig.loop.counters
        assert cnt[C["hot_errors"]] == 1 and rig.execs[1].next_calls == 1
        assert any(f"firing leg 1 from the hot thread (slot 1 corr {corr:x})" in x for x in rig.lines)
        assert _readable(sh.slot_fds[1])                      # woken all the same
    finally:
        rig.close()


def _readable(fd) -> bool:
    import select
    return bool(select.select([fd], [], [], 0)[0])
