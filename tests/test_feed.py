"""Tests of the feed recording format (feed.py): round trip, a crash-truncated file, the
capture readers.

Run: `python -m pytest -q tests/test_feed.py`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import feed  # noqa: E402

DATA = ROOT / "tests" / "data"


def test_recorder_when_reads_from_another_thread_then_read_back_in_order_and_equal(tmp_path):
    path = tmp_path / "feed.zst"
    rec = feed.Recorder(path, {"config": {"slots": "2"}, "symbols": []}, poll_s=0.005)
    stop = threading.Event()
    t = threading.Thread(target=rec.run, args=(stop,))
    t.start()
    rng = np.random.default_rng(1)
    sent = []
    for i in range(2000):
        buf = rng.integers(0, 256, 300, dtype=np.uint8)
        end = int(rng.integers(1, 300))
        rec.read(1 + i % 2, 1000 + i, buf, end)
        sent.append((1 + i % 2, 1000 + i, buf[:end].tobytes()))
    rec.reeval(5, np.array([3, 4], np.int64))
    stop.set()
    t.join()
    got = list(feed.read_records(path))
    assert got[0].kind == feed.K_HEADER and got[0].json()["config"] == {"slots": "2"}
    reads = [(r.link, r.ns, r.payload) for r in got if r.kind == feed.K_READ]
    assert reads == sent
    assert got[-1].kind == feed.K_REEVAL and np.frombuffer(got[-1].payload, "<i8").tolist() == [3, 4]
    assert rec.raw_bytes > path.stat().st_size          # it compresses


def test_recording_when_process_dies_after_a_flush_then_flushed_records_read_back(tmp_path):
    """A crash (os._exit, no close) keeps everything up to the last flush."""
    path = tmp_path / "feed.zst"
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, feed
rec = feed.Recorder({str(path)!r}, {{"symbols": []}})
buf = np.frombuffer(b'{{"type":"message","n":%d}}' * 1, np.uint8)
for i in range(500):
    rec.read(1, i, np.frombuffer(b'frame-%06d' % i, np.uint8), 12)
rec.drain(); rec._flush()
for i in range(500, 700):
    rec.read(1, i, np.frombuffer(b'frame-%06d' % i, np.uint8), 12)
rec.drain()          # written to the compressor, never flushed
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    reads = [r for r in feed.read_records(path) if r.kind == feed.K_READ]
    assert [r.ns for r in reads[:500]] == list(range(500))
    assert all(r.payload == b"frame-%06d" % r.ns for r in reads)
    # a file cut anywhere (a torn last block) still reads, up to a whole record
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20):
        part = tmp_path / f"cut{cut}.zst"
        part.write_bytes(data[:cut])
        got = [r.ns for r in feed.read_records(part) if r.kind == feed.K_READ]
        assert got == list(range(len(got)))


def test_capture_symbols_when_missing_from_symbol_list_then_increments_from_the_data():
    known = json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())
    syms, derived = feed.capture_symbols(DATA / "ws-public-2021-04-25.jsonl",
                                         DATA / "orderbook-level2-snapshots-2021-04-25.jsonl", known)
    names = [d["symbol"] for d in syms]
    assert len(names) == 9 and "BCHSV-USDT" in names
    assert derived == ["COV-BTC", "DAPPT-BTC", "EQZ-BTC", "NRG-BTC"]
    dappt = next(d for d in syms if d["symbol"] == "DAPPT-BTC")
    assert dappt["priceIncrement"] == "0.0000000001"     # the match frame: 0.0000001117
    bchsv = next(d for d in syms if d["symbol"] == "BCHSV-USDT")
    assert bchsv["priceIncrement"] == "0.01"             # from the symbol list, not the data


def test_capture_events_when_read_then_received_frames_and_snapshots_in_time_order():
    ev = feed.capture_events(DATA / "ws-public-2021-04-25.jsonl",
                             DATA / "orderbook-level2-snapshots-2021-04-25.jsonl")
    kinds = [e[0] for e in ev]
    assert kinds.count("snap_rest") == 9 and kinds.count("read") == 4721
    ns = [e[2] if e[0] == "read" else e[1] for e in ev]
    assert ns == sorted(ns)
