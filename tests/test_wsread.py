"""wsread.py: RFC 6455 server frames cut out of raw socket bytes (socketpair, no server)."""
import socket
import struct
import threading

import pytest

import wsread


def frame(payload: bytes, op=wsread.OP_TEXT, fin=True, masked=False) -> bytes:
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if masked else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield wsread.FrameReader(a), b
    a.close()
    b.close()


def read_all(rd):
    out = []
    while rd.fill():
        out += list(rd.frames())
    return out


def test_frames_when_all_three_length_encodings_then_payloads_exact(pair):
    rd, peer = pair
    msgs = [b"x" * 5, b"y" * 300, b"z" * 70000]
    peer.sendall(b"".join(frame(m) for m in msgs))
    got = []
    while len(got) < 3:
        rd.fill()
        got += [p for _, p in rd.frames()]
    assert got == msgs and rd.blen == 0


def test_frames_when_split_across_reads_then_held_until_complete(pair):
    rd, peer = pair
    data = frame(b'{"type":"message"}') + frame(b"second")
    peer.sendall(data[:7])
    rd.fill()
    assert list(rd.frames()) == [] and rd.blen == 7
    peer.sendall(data[7:])
    rd.fill()
    assert [p for _, p in rd.frames()] == [b'{"type":"message"}', b"second"]


def test_frames_when_fragmented_with_control_frame_between_then_joined(pair):
    rd, peer = pair
    peer.sendall(frame(b"ab", fin=False) + frame(b"ping", op=wsread.OP_PING)
                 + frame(b"cd", op=wsread.OP_CONT, fin=False) + frame(b"ef", op=wsread.OP_CONT))
    got = read_all(rd)
    assert got == [(wsread.OP_PING, b"ping"), (wsread.OP_TEXT, b"abcdef")]


def test_frames_when_masked_or_orphan_continuation_then_link_closed(pair):
    rd, peer = pair
    peer.sendall(frame(b"m", masked=True))
    rd.fill()
    with pytest.raises(wsread.LinkClosed):
        list(rd.frames())
    rd.blen = 0
    peer.sendall(frame(b"c", op=wsread.OP_CONT))
    rd.fill()
    with pytest.raises(wsread.LinkClosed):
        list(rd.frames())


def test_fill_when_nothing_then_zero_and_when_peer_closed_then_link_closed(pair):
    rd, peer = pair
    assert rd.fill() == 0
    peer.sendall(frame(b"bye", op=wsread.OP_CLOSE))
    peer.shutdown(socket.SHUT_WR)
    assert rd.fill() > 0
    assert list(rd.frames()) == [(wsread.OP_CLOSE, b"bye")]
    with pytest.raises(wsread.LinkClosed):
        rd.fill()


def test_feed_when_bytes_read_elsewhere_then_frames_continue_from_them(pair):
    rd, peer = pair
    data = frame(b"first") + frame(b"second")
    rd.feed(data[:9])
    peer.sendall(data[9:])
    rd.fill()
    assert [p for _, p in rd.frames()] == [b"first", b"second"]


def test_fill_when_frame_larger_than_buffer_then_buffer_grows(pair):
    rd, peer = pair
    big = b"q" * (3 * wsread.CHUNK)
    threading.Thread(target=peer.sendall, args=(frame(big) + frame(b"after"),), daemon=True).start()
    got, peak = [], 0
    while len(got) < 2:
        rd.fill()
        peak = max(peak, len(rd.buf))
        got += [p for _, p in rd.frames()]
    assert got == [big, b"after"] and peak >= 3 * wsread.CHUNK
    assert len(rd.buf) == 2 * wsread.CHUNK              # and shrinks back once consumed


def test_next_frame_when_header_or_payload_short_then_incomplete_with_needed_length():
    import numpy as np
    f = frame(b"z" * 300)
    buf = np.frombuffer(f, np.uint8)
    assert wsread.next_frame(buf, 0, 3)[0] == wsread.F_INCOMPLETE
    st, _, _, end = wsread.next_frame(buf, 0, 100)
    assert st == wsread.F_INCOMPLETE and end == len(f)
    st, b0, s, e = wsread.next_frame(buf, 0, len(f))
    assert (st, b0 & 0x0F, s, e) == (wsread.F_OK, wsread.OP_TEXT, 4, len(f))
    huge = np.frombuffer(bytes([0x81, 127]) + (1 << 40).to_bytes(8, "big"), np.uint8)
    assert wsread.next_frame(huge, 0, len(huge))[0] == wsread.F_TOO_BIG


def test_text_header_when_each_length_encoding_then_same_as_test_framer():
    for n in (0, 125, 126, 65535, 65536):
        assert wsread.text_header(n) == frame(b"x" * n)[:-n or None]


def test_buffer_when_oversized_frame_consumed_then_back_to_normal_size_and_reading_goes_on(pair):
    """A frame larger than the buffer makes it grow; once that frame is consumed the buffer
    returns to 2 x CHUNK (a day of a few large frames must not keep tens of MiB)."""
    rd, peer = pair
    big = b"[" + b"7," * (3 * wsread.CHUNK) + b"7]"          # ~1.5 MiB: 3 x the buffer
    after = [b"small-1", b"small-2"]
    t = threading.Thread(target=peer.sendall, args=(frame(big) + b"".join(frame(m) for m in after),))
    t.start()
    got, peak = [], 0
    while len(got) < 3:
        rd.fill()
        peak = max(peak, len(rd.buf))
        got += [p for _, p in rd.frames()]
    t.join()
    assert got == [big] + after
    assert peak > 2 * wsread.CHUNK and len(rd.buf) == 2 * wsread.CHUNK
    assert rd.addr == rd.buf.ctypes.data and rd.blen == 0
    peer.sendall(frame(b"later"))                            # recv goes into the new buffer
    assert read_all(rd) == [(wsread.OP_TEXT, b"later")]


def test_buffer_when_partial_frame_left_after_big_one_then_kept_across_the_shrink(pair):
    rd, peer = pair
    big, nxt = b"b" * (3 * wsread.CHUNK), frame(b"next-frame-payload")
    rd.feed(frame(big) + nxt[:9])
    assert [p for _, p in rd.frames()] == [big]
    assert len(rd.buf) == 2 * wsread.CHUNK and rd.blen == 9
    rd.feed(nxt[9:])
    assert [p for _, p in rd.frames()] == [b"next-frame-payload"]


def test_fragments_when_joined_message_passes_max_frame_then_link_closed(pair, monkeypatch):
    rd, _ = pair
    monkeypatch.setattr(wsread, "MAX_FRAME", 1000)          # the join's limit (not the kernel's)
    rd.feed(frame(b"a" * 600, fin=False) + frame(b"b" * 300, op=wsread.OP_CONT, fin=False))
    assert list(rd.frames()) == []
    rd.feed(frame(b"c" * 200, op=wsread.OP_CONT, fin=False))
    with pytest.raises(wsread.LinkClosed, match="fragmented message larger"):
        list(rd.frames())


def test_fragments_when_message_completes_then_join_buffer_released(pair):
    rd, _ = pair
    rd.feed(frame(b"a" * 5000, fin=False) + frame(b"b" * 5000, op=wsread.OP_CONT))
    assert [p for _, p in rd.frames()] == [b"a" * 5000 + b"b" * 5000]
    assert len(rd._frag) == 0 and rd._frag_op == -1
