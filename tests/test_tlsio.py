"""TLS on every engine connection, against the simulator serving https/wss (`python -m sim --tls`).

- tlsio.held: the SSL* found behind an established ssl.SSLSocket (and None for anything
  else), GIL-holding reads of a wss link through wsread.FrameReader (the same frames as
  through the ssl module), GIL-holding writes of signed orders on an order connection;
- verification stays on everywhere: the REST client, an order connection and a WebSocket
  handshake each refuse the simulator's certificate without its CA, with another CA, and
  under a name it was not issued for, with one line naming the URL and OpenSSL's reason;
  the maintenance thread reports such a failure once (on_fatal), it does not retry;
- tlsio.WarmPair (the hot thread's keep-warm of the TLS code): a request encrypted and
  decrypted in memory with the held calls, the SSLObject's SSL* found and checked;
- order connections over TLS: the session is resumed on the next connection; a connection
  the venue closed is found by the idle check and replaced by `refresh()` (off the order
  path), and a send that finds it dead reconnects inline (counted).

~5 s (two simulators). Run: python -m pytest -q tests/test_tlsio.py
"""
from __future__ import annotations

import itertools
import json
import socket
import time

import pytest
import trustme

import kucoin
import maint
import tlsio
import wsread
from conftest import SimProcess
from orderwire import OrderConn, OrderWireError
from signer import Signer

pytestmark = pytest.mark.skipif(not tlsio.available(), reason=tlsio.WHY_NOT or "held TLS I/O unavailable")


@pytest.fixture(scope="module")
def tsim():
    s = SimProcess(tls=True, ws_connects_per_min=0, symbols=20, update_rate=200)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that did not sign the simulator's certificate."""
    p = tmp_path_factory.mktemp("ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(p))
    return str(p)


def signer(s) -> Signer:
    return Signer(s.api_key, s.api_secret, s.api_passphrase, 3)


def frames_until(rd, pred, timeout=5.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred(got):
        if rd.fill() == 0:
            time.sleep(0.005)
        got += [json.loads(p) for op, p in rd.frames() if op == wsread.OP_TEXT]
    return got


# -- held I/O -----------------------------------------------------------------------------------

def test_start_line_when_tls_then_https_wss_and_ca_file(tsim):
    assert tsim.base_url.startswith("https://127.0.0.1:")
    assert f"ws=wss://127.0.0.1:{tsim.port}/endpoint" in tsim.start_line and tsim.ca_file
    bullet = tsim.post("/api/v1/bullet-public")["data"]["instanceServers"][0]
    assert bullet["endpoint"] == f"wss://127.0.0.1:{tsim.port}/endpoint" and bullet["encrypt"] is True


def test_ssl_pointer_when_not_an_established_tls_socket_then_none():
    a, b = socket.socketpair()
    try:
        assert tlsio.ssl_pointer(a) is None and tlsio.held(a) is None
        assert tlsio.ssl_pointer(object()) is None
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("held", [True, False])
def test_link_when_wss_then_frames_read_with_held_or_ssl_module_reads(tsim, held):
    client = kucoin.KucoinClient(tsim.base_url, ca_file=tsim.ca_file)
    syms = [d["symbol"] for d in client.symbols()][:5]
    link = maint.open_link(client, "public", syms, itertools.count(1), ca_file=tsim.ca_file)
    try:
        rd = wsread.FrameReader(link.ws.sock, held=held)
        assert rd.tls and (rd.held is not None) == held
        if held:
            assert tlsio.ssl_pointer(link.ws.sock) == rd.held.ssl
        rd.feed(b"".join(link.ws.frame_buffer.recv_buffer))
        got = frames_until(rd, lambda g: any(f.get("type") == "ack" for f in g)
                           and sum(f.get("subject") == "trade.l2update" for f in g) >= 5)
        assert any(f.get("type") == "ack" for f in got), got[:3]
        l2 = [f for f in got if f.get("subject") == "trade.l2update"]
        assert len(l2) >= 5 and {f["data"]["symbol"] for f in l2} <= set(syms)
        link.ws.send('{"id":"p1","type":"ping"}')     # the ssl module's write, then our read
        got = frames_until(rd, lambda g: any(f.get("type") == "pong" for f in g))
        assert any(f.get("id") == "p1" for f in got if f.get("type") == "pong")
    finally:
        link.ws.close()


def test_warm_pair_when_run_then_request_goes_through_in_memory_with_held_calls():
    w = tlsio.WarmPair.make()
    assert w is not None and w.cipher[1] == "TLSv1.3"
    assert tlsio.bio_pointer(w.client) == w.w.ssl and tlsio.bio_pointer(w.server) == w.r.ssl
    assert tlsio.bio_pointer(object()) is None
    for _ in range(3):
        assert w.run() == len(w.msg)
    assert w.buf.raw[:len(w.msg)] == w.msg


def test_order_conn_when_tls_then_held_writes_signed_orders_and_session_resumed(tsim):
    s = signer(tsim)
    c = OrderConn(tsim.base_url, ca_file=tsim.ca_file)
    c.connect()
    assert c.wire.held is not None and not c.wire.resumed
    for i in range(3):
        body = (b'{"clientOid":"tls%d","side":"buy","symbol":"BTC-USDT","type":"market","funds":"10"}' % i)
        c.send(c.post_request(s, b"/api/v1/hf/orders/test", int(time.time() * 1000), body))
        status, _h, resp = c.read_response()
        assert status == 200 and json.loads(resp)["code"] == "200000", resp
    assert not c.wire.stale()
    # the next connection resumes the TLS session (shorter handshake)
    c.connect()
    assert c.wire.resumed
    c.close()


def test_order_conn_when_venue_closes_it_then_refresh_replaces_it_off_the_order_path(tsim):
    s = signer(tsim)
    c = OrderConn(tsim.base_url, ca_file=tsim.ca_file)
    c.connect()
    assert c.refresh() == ""                       # open and idle: nothing to do
    assert tsim.control(close_rest_conns=True)["closed_rest_conns"] >= 1
    deadline = time.monotonic() + 5
    while not c.wire.stale() and time.monotonic() < deadline:
        time.sleep(0.01)
    old = c.wire
    assert c.refresh() == "closed by the venue" and c.wire is not old and c.reconnects == 1
    body = b'{"clientOid":"tlsr","side":"buy","symbol":"BTC-USDT","type":"market","funds":"10"}'
    c.send(c.post_request(s, b"/api/v1/hf/orders/test", int(time.time() * 1000), body))
    assert c.read_response()[0] == 200 and c.inline_reconnects == 0
    # a send that finds the connection dead reconnects inline: counted and timed
    tsim.control(close_rest_conns=True)
    deadline = time.monotonic() + 5
    while not c.wire.stale() and time.monotonic() < deadline:
        time.sleep(0.01)
    c.send(c.post_request(s, b"/api/v1/hf/orders/test", int(time.time() * 1000), body.replace(b"tlsr", b"tlsi")))
    assert c.read_response()[0] == 200
    assert c.inline_reconnects == 1 and c.last_inline_us > 0
    c.close()


def test_order_conn_when_kernel_writes_over_tls_then_ssl_write_on_its_ssl_and_venue_answers(tsim):
    """leg0_send = kernel over TLS: the cell names the connection's descriptor and SSL*, the
    kernel's SSL_write (orderkern.peek_send, jitted) makes records the venue accepts, the ssl
    module reads the answer; a connection the venue closed is left to Python, which reconnects."""
    import numpy as np

    import orderkern
    s = signer(tsim)
    c = OrderConn(tsim.base_url, ca_file=tsim.ca_file)
    cell = orderkern.cell()
    c.attach_kernel(cell)
    c.connect()
    assert cell["fd"][0] == c.wire.fd and cell["ssl"][0] == c.wire.held.ssl != 0
    fns = orderkern.tls_fns()
    peek = np.zeros(1, np.uint8)
    for i in range(3):
        body = b'{"clientOid":"tlsk%d","side":"buy","symbol":"BTC-USDT","type":"market","funds":"10"}' % i
        req = c.post_request(s, b"/api/v1/hf/orders/test", int(time.time() * 1000), body)
        fd = int(cell["fd"][0])
        n = orderkern.wire_write(fd, int(cell["ssl"][0]), np.frombuffer(req, np.uint8).copy(), len(req),
                                 peek, fns, np.zeros(1, np.int64))
        assert n == len(req)
        c.kernel_sent(fd, n, req, 1)
        status, _h, resp = c.read_response()
        assert status == 200 and json.loads(resp)["code"] == "200000", resp
    assert not c.wire.stale()
    tsim.control(close_rest_conns=True)
    deadline = time.monotonic() + 5
    while not c.wire.stale() and time.monotonic() < deadline:
        time.sleep(0.01)
    n = orderkern.wire_write(int(cell["fd"][0]), int(cell["ssl"][0]), np.frombuffer(req, np.uint8).copy(),
                             len(req), peek, fns, np.zeros(1, np.int64))
    assert n == orderkern.SENT_STALE
    c.send(req)                      # fire_leg0's fallback: reconnects, then writes
    assert c.read_response()[0] == 200 and c.inline_reconnects == 1
    assert cell["fd"][0] == c.wire.fd and cell["ssl"][0] == c.wire.held.ssl
    c.close()
    assert cell["fd"][0] == -1


# -- verification stays on -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def misnamed():
    """A TLS simulator whose certificate names another host."""
    s = SimProcess(tls=True, tls_names="other.example", symbols=10, update_rate=10)
    yield s
    s.stop()


def bad_cases(tsim, misnamed, other_ca):
    return [(tsim, "", "unable to get local issuer certificate"),
            (tsim, other_ca, "unable to get local issuer certificate"),
            (misnamed, misnamed.ca_file, "certificate is not valid for '127.0.0.1'")]


def test_rest_when_certificate_fails_verification_then_one_line_with_url_and_reason(tsim, misnamed, other_ca):
    for s, ca, reason in bad_cases(tsim, misnamed, other_ca):
        with pytest.raises(kucoin.TlsVerifyError) as ei:
            kucoin.KucoinClient(s.base_url, ca_file=ca).server_time_ms()
        line = ei.value.tls_failure
        assert line.startswith(f"TLS certificate verification failed for {s.base_url}: ") and reason in line, line
        assert (ca or "the system CA store") in line and "\n" not in line
    # and with the right CA it works
    assert kucoin.KucoinClient(tsim.base_url, ca_file=tsim.ca_file).server_time_ms() > 0


def test_order_conn_when_certificate_fails_verification_then_orderwireerror_with_line(tsim, misnamed, other_ca):
    for s, ca, reason in bad_cases(tsim, misnamed, other_ca):
        c = OrderConn(s.base_url, ca_file=ca, timeout_s=2)
        with pytest.raises(OrderWireError) as ei:
            c.connect()
        assert ei.value.tls_failure.startswith(f"TLS certificate verification failed for {s.base_url}: ")
        assert reason in ei.value.tls_failure


def test_link_when_certificate_fails_verification_then_linkerror_and_maint_reports_it_once(tsim, other_ca):
    client = kucoin.KucoinClient(tsim.base_url, ca_file=tsim.ca_file)   # REST trusted
    with pytest.raises(maint.LinkError) as ei:
        maint.open_link(client, "public", ["BTC-USDT"], itertools.count(1), ca_file=other_ca)
    line = ei.value.tls_failure
    assert line.startswith(f"TLS certificate verification failed for wss://127.0.0.1:{tsim.port}/endpoint: ")
    assert "token" not in line                     # the bullet token is a credential
    import threading
    fatal, logs = [], []
    import rings
    ml = maint.MaintLoop(client, ["BTC-USDT"], 64, rings.alloc_ring(maint.SNAP_REQ_DTYPE, 64),
                         rings.alloc_ring(maint.snapshot_dtype(100), 4), -1, -1,
                         threading.Event(), logs.append, ca_file=other_ca, on_fatal=fatal.append)
    ml.link_requests.put(("public", ["BTC-USDT"]))
    ml._serve_links()
    assert len(fatal) == 1 and fatal[0].startswith("TLS certificate verification failed for wss://")
    assert ml.link_requests.empty(), "a verification failure must not be retried"
