"""topics.py: symbol rows from topic bytes inside a kernel (hash table over the real list)."""
import json
from pathlib import Path

import numpy as np
import pytest

import topics

ROOT = Path(__file__).resolve().parent.parent


def real_symbols():
    return [d["symbol"] for d in json.loads((ROOT / "data" / "symbols-2024-09.json").read_text())]


def test_row_when_every_real_symbol_then_its_own_row_and_unknown_minus_one():
    names = real_symbols()
    t = topics.SymbolTable(names)
    assert [t.row(n.encode()) for n in names] == list(range(len(names)))
    for bad in (b"", b"BTC-USD", b"BTC-USDTX", b"btc-usdt", b"X" * 40):
        assert t.row(bad) == -1


def test_table_when_symbol_listed_twice_then_refused():
    with pytest.raises(ValueError, match="twice"):
        topics.SymbolTable(["BTC-USDT", "ETH-USDT", "BTC-USDT"])


def test_level2_symbol_when_frame_kinds_then_row_or_reason():
    t = topics.SymbolTable(["BTC-USDT", "ETH-BTC"])

    def probe(text: bytes) -> int:
        b = np.frombuffer(text, np.uint8)
        return int(topics.level2_symbol(b, 0, len(b), t.slots, t.names, t.lens))

    l2 = b'{"topic":"/market/level2:ETH-BTC","type":"message","subject":"trade.l2update","data":{}}'
    assert probe(l2) == 1
    assert probe(l2.replace(b"ETH-BTC", b"LTC-BTC")) == -1                 # not ours
    assert probe(l2.replace(b"/market/level2:", b"/market/ticker:")) == -3  # no level2 topic
    assert probe(l2.replace(b"ETH-BTC", b"")) == -3                        # empty symbol
    assert probe(b'{"type":"message","subject":"orderChange","data":{}}') == -2
    assert probe(b'{"type":"pong"}') == -2
