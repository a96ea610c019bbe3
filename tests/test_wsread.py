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
    got = []
    while len(got) < 2:
        rd.fill()
        got += [p for _, p in rd.frames()]
    assert got == [big, b"after"] and len(rd.buf) >= 3 * wsread.CHUNK


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
