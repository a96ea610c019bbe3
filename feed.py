"""Recorded market feeds: the file format, the recorder thread, and the readers replay.py uses.

Owns: the feed format (`runs/<start>/feed.zst`), `Recorder` (the thread that compresses and
writes it), `read_records` (a recording back as records, tolerant of a crash-truncated
tail) and `capture_events` (the JSONL captures in tests/data as the same events).

Why record socket reads and not parsed messages: the replay (replay.py) then feeds the very
bytes the hot thread saw through the very kernel call it made (hotctx.hot_chunk: frame
cutter, topic table, parser, book, evaluation), with the receive time of the read.

Threads. The hot thread hands each socket read over *after* its frames were handled, as one
`bytes` copy appended to a `collections.deque` (`Recorder.read`): no lock, no wake-up
(a blocking queue would wake the writer and let it compete for the GIL at every frame,
docs/design.md 9). The recorder thread ("rec", started by run.py) wakes every `poll_s`,
drains the deque, compresses (zstandard releases the GIL while it compresses) and writes;
every `flush_s` it ends a zstd block and flushes the file, so a crash loses at most the
last `flush_s` of data: the stream decodes up to its last flushed block. The main thread
appends the halt marker. Nothing else touches the file.

Format: the 8-byte magic, then records, each a 16-byte header `<BBHIq` (kind, link id,
flags, payload length, ns) and its payload; ns is CLOCK_MONOTONIC (the engine's clock),
the header record maps it to UTC. Kinds:
  HEADER  JSON: version, utc_ns/mono_ns at start, the effective [engine] config, the
          venue's symbol dicts, fees, balances at start, slots, snapshot depth
  LINK    JSON {kind, connect_id, symbols}: link `link` handed to the hot thread
  DOWN    link `link` died (its books went back to RESYNCING)
  READ    the complete frames of one socket read of link `link`, received at ns
  SNAP    a REST snapshot as the hot thread applied it at ns: the raw
          maint.snapshot_dtype(depth) record (depth in flags)
  REEVAL  the hot thread was woken (a slot released): int64 released_seq of every slot
  HALT    the main thread stopped new signals (shutdown)
  CONSUME the levels a paper leg took, as the hot thread subtracted them (paperbook.py)

Measured cost and size: README "Recording, replay and the opportunity table".
"""
from __future__ import annotations

import collections
import json
import struct
import time
from decimal import Decimal
from pathlib import Path

import zstandard

MAGIC = b"KTAFEED1"
REC = struct.Struct("<BBHIq")
VERSION = 1

K_HEADER = 1
K_LINK = 2
K_DOWN = 3
K_READ = 4
K_SNAP = 5
K_REEVAL = 6
K_HALT = 7
K_CONSUME = 8
KIND_NAMES = {K_HEADER: "header", K_LINK: "link", K_DOWN: "down", K_READ: "read",
              K_SNAP: "snap", K_REEVAL: "reeval", K_HALT: "halt", K_CONSUME: "consume"}


def _jsonable(v):
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def config_text(engine: dict) -> dict:
    """[engine] values as the ini text that parses back to them (config.SCHEMA)."""
    out = {}
    for k, v in engine.items():
        if isinstance(v, dict):
            v = ",".join(f"{a}={format(b, 'f') if isinstance(b, Decimal) else b}" for a, b in v.items())
        elif isinstance(v, tuple):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out[k] = str(v)
    return out


class Recorder:
    """Appends records from any thread (`read`, `link`, ...: a deque append each, never a
    wake-up) and writes them compressed from its own thread (`run`)."""

    def __init__(self, path: Path, header: dict, level: int = 3, poll_s: float = 0.05,
                 flush_s: float = 1.0):
        self.path = Path(path)
        self.q: collections.deque = collections.deque()
        self.poll_s = poll_s
        self.flush_s = flush_s
        self._f = open(self.path, "wb")
        self._z = zstandard.ZstdCompressor(level=level).stream_writer(self._f, closefd=False)
        self._z.write(MAGIC)
        head = dict(header, version=VERSION, utc_ns=time.time_ns(), mono_ns=time.monotonic_ns())
        self._write(K_HEADER, 0, 0, head["mono_ns"], json.dumps(_jsonable(head)).encode())
        self._flush()
        self.raw_bytes = 0        # bytes before compression (recorder thread)
        self.records = 0
        self.closed = False

    # -- producers (hot thread; main thread for halt) ---------------------------------------
    def read(self, link_id: int, recv_ns: int, buf, end: int) -> None:
        """The complete frames buf[0:end] of one socket read (hot thread, after handling them)."""
        self.q.append((K_READ, link_id, 0, recv_ns, buf[:end].tobytes()))

    def link(self, link_id: int, kind: str, connect_id: str, symbols) -> None:
        self.q.append((K_LINK, link_id, 0, time.monotonic_ns(), json.dumps(
            {"kind": kind, "connect_id": connect_id, "symbols": list(symbols)}).encode()))

    def down(self, link_id: int) -> None:
        self.q.append((K_DOWN, link_id, 0, time.monotonic_ns(), b""))

    def snapshot(self, rec, now_ns: int, depth: int) -> None:
        self.q.append((K_SNAP, 0, depth, now_ns, rec.tobytes()))

    def reeval(self, now_ns: int, released_seq) -> None:
        self.q.append((K_REEVAL, 0, 0, now_ns, released_seq.astype("<i8").tobytes()))

    def consume(self, rec, now_ns: int) -> None:
        self.q.append((K_CONSUME, 0, 0, now_ns, rec.tobytes()))

    def halt(self) -> None:
        self.q.append((K_HALT, 0, 0, time.monotonic_ns(), b""))

    # -- the recorder thread ---------------------------------------------------------------
    def _write(self, kind, link, flags, ns, payload: bytes) -> None:
        self._z.write(REC.pack(kind, link, flags, len(payload), ns))
        self._z.write(payload)

    def _flush(self) -> None:
        self._z.flush(zstandard.FLUSH_BLOCK)
        self._f.flush()

    def drain(self) -> int:
        """Everything queued, as one write: one compressor call per drain. The compressor
        releases the GIL while it works; a call per record would hand the GIL back and forth
        with the hot thread hundreds of times per drain (docs/design.md 9)."""
        q = self.q
        parts = []
        n = 0
        while q:
            kind, link, flags, ns, payload = q.popleft()
            parts.append(REC.pack(kind, link, flags, len(payload), ns))
            parts.append(payload)
            n += 1
        if parts:
            blob = b"".join(parts)
            self._z.write(blob)
            self.raw_bytes += len(blob)
        self.records += n
        return n

    def run(self, stop) -> None:
        """Until `stop` (a threading.Event) is set: drain every poll_s, flush every flush_s."""
        last_flush = time.monotonic()
        while not stop.wait(self.poll_s):
            self.drain()
            if time.monotonic() - last_flush >= self.flush_s:
                self._flush()
                last_flush = time.monotonic()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.drain()
        self._z.flush(zstandard.FLUSH_FRAME)
        self._z.close()
        self._f.close()
        self.closed = True


# -- reading ---------------------------------------------------------------------------------

class Record:
    __slots__ = ("kind", "link", "flags", "ns", "payload")

    def __init__(self, kind, link, flags, ns, payload):
        self.kind, self.link, self.flags, self.ns, self.payload = kind, link, flags, ns, payload

    def json(self):
        return json.loads(self.payload)


def read_records(path, chunk: int = 1 << 20):
    """Every whole record of a recording, in order. A file cut short (a crash) yields the
    records up to its last complete one; `truncated` on the generator's last value is not
    needed: a partial record is simply not yielded."""
    d = zstandard.ZstdDecompressor().decompressobj()
    buf = bytearray()
    pos = 0
    magic_seen = False
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            if not data:
                break
            try:
                buf += d.decompress(data)
            except zstandard.ZstdError:
                break            # a corrupt tail: keep what decoded
            if not magic_seen:
                if len(buf) < len(MAGIC):
                    continue
                if bytes(buf[:len(MAGIC)]) != MAGIC:
                    raise ValueError(f"{path}: not a feed recording")
                pos = len(MAGIC)
                magic_seen = True
            while len(buf) - pos >= REC.size:
                kind, link, flags, n, ns = REC.unpack_from(buf, pos)
                if len(buf) - pos - REC.size < n:
                    break
                s = pos + REC.size
                yield Record(kind, link, flags, ns, bytes(buf[s:s + n]))
                pos = s + n
            if pos > (1 << 22):
                del buf[:pos]
                pos = 0


def header_of(path) -> dict:
    for r in read_records(path):
        if r.kind != K_HEADER:
            raise ValueError(f"{path}: the first record is not a header")
        return r.json()
    raise ValueError(f"{path}: empty recording")


# -- the JSONL captures of tests/data ---------------------------------------------------------

def capture_events(ws_path, snaps_path=None):
    """A mixed public capture (one JSON line per message: recv_ts in s, direction, msg) and
    its REST level2 snapshots (recv_ts, url, response) as replay events in receive order:
    ("read", link, ns, frame bytes) with the frame re-serialised compactly and given a
    WebSocket header, as the hot thread would have read it; ("snap_rest", ns, symbol, data).
    Sent messages are skipped."""
    import wsread
    events = []
    with open(ws_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            d = json.loads(line)
            if d.get("direction") != "recv":
                continue
            text = json.dumps(d["msg"], separators=(",", ":")).encode()
            events.append((int(round(d["recv_ts"] * 1e9)), 1, i,
                           ("read", 1, int(round(d["recv_ts"] * 1e9)),
                            wsread.text_header(len(text)) + text)))
    if snaps_path:
        with open(snaps_path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                d = json.loads(line)
                sym = d["url"].split("symbol=")[1].split("&")[0]
                ns = int(round(d["recv_ts"] * 1e9))
                events.append((ns, 0, i, ("snap_rest", ns, sym, d["response"]["data"])))
    events.sort(key=lambda e: e[:3])
    return [e[3] for e in events]


def capture_symbols(ws_path, snaps_path=None, known=None):
    """The level2 symbols of a capture, as v2 symbol dicts: from `known` (a symbol list such
    as data/symbols-2024-09.json) when it has them, else derived from the data: increments
    from the most decimals seen in prices and sizes (frames and snapshots), minimum size one
    increment, no maximum. Returns (dicts, names of the derived ones)."""
    known = {d["symbol"]: d for d in (known or [])}
    decs: dict[str, list[int]] = {}

    def see(sym, px, sz):
        d = decs.setdefault(sym, [0, 0])
        for k, v in ((0, px), (1, sz)):
            if "." in v:
                d[k] = max(d[k], len(v.split(".")[1].rstrip("0")))

    with open(ws_path, encoding="utf-8") as f:
        for line in f:
            m = json.loads(line).get("msg") or {}
            if isinstance(m, dict) and m.get("subject") == "trade.l2update":
                data = m["data"]
                for side in ("asks", "bids"):
                    for p, s, _q in data["changes"][side]:
                        if p != "0":
                            see(data["symbol"], p, s)
    if snaps_path:
        with open(snaps_path, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                sym = d["url"].split("symbol=")[1].split("&")[0]
                for side in ("asks", "bids"):
                    for p, s in d["response"]["data"][side]:
                        see(sym, p, s)
    out, derived = [], []
    for sym in sorted(decs):
        if sym in known:
            out.append(dict(known[sym]))
            continue
        base, quote = sym.split("-")
        pinc = format(Decimal(1).scaleb(-decs[sym][0]), "f")
        binc = format(Decimal(1).scaleb(-decs[sym][1]), "f")
        out.append({"symbol": sym, "name": sym, "baseCurrency": base, "quoteCurrency": quote,
                    "baseMinSize": binc, "quoteMinSize": pinc, "baseMaxSize": "10000000000",
                    "quoteMaxSize": "99999999", "baseIncrement": binc, "quoteIncrement": pinc,
                    "priceIncrement": pinc, "minFunds": "0", "enableTrading": True})
        derived.append(sym)
    return out, derived
