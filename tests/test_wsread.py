"""wsread.py: RFC 6455 server frames cut out of raw socket bytes (socketpair, no server)."""
import socket
import struct

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
    assert got == msgs and not rd.buf


def test_frames_when_split_across_reads_then_held_until_complete(pair):
    rd, peer = pair
    data = frame(b'{"type":"message"}') + frame(b"second")
    peer.sendall(data[:7])
    rd.fill()
    assert list(rd.frames()) == [] and len(rd.buf) == 7
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
    rd.buf.clear()
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
