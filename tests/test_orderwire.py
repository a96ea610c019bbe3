"""orderwire.py against a tiny local HTTP/1.1 server: keep-alive, chunked, stale reconnect, lost response."""
import socket
import threading

import pytest

from orderwire import OrderConn, OrderWireError, ResponseLost


class Server:
    """Accepts connections; for each request line answers with the next scripted action."""

    def __init__(self, script):
        self.script = list(script)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.requests = []
        self.accepts = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while self.script:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepts += 1
            buf = b""
            while self.script:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        break
                    buf += d
                if b"\r\n\r\n" not in buf:
                    break
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                while len(buf) < n:
                    buf += c.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:n])
                buf = buf[n:]
                action = self.script.pop(0)
                if action == "close":
                    c.close()
                    break
                c.sendall(action)
            c.close()


def ok(body=b'{"code":"200000"}'):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_send_when_two_requests_then_one_connection_is_kept_alive():
    srv = Server([ok(b"a"), ok(b"bb")])
    c = OrderConn(f"http://127.0.0.1:{srv.port}")
    for expected in (b"a", b"bb"):
        c.send(c.request_bytes("POST", "/api/v1/hf/orders", b"X: 1\r\n", b"{}"))
        status, headers, body = c.read_response()
        assert status == 200 and body == expected
    assert srv.accepts == 1
    assert srv.requests[0].startswith(b"POST /api/v1/hf/orders HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 2\r\n\r\n{}" in srv.requests[0]


def test_read_when_chunked_then_body_is_joined():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    srv = Server([chunked, ok(b"next")])
    c = OrderConn(f"http://127.0.0.1:{srv.port}")
    c.send(c.request_bytes("POST", "/x", b"", b""))
    assert c.read_response()[2] == b"abcde"
    c.send(c.request_bytes("POST", "/x", b"", b""))
    assert c.read_response()[2] == b"next"


def test_send_when_server_closed_idle_connection_then_reconnects_before_sending():
    srv = Server([ok(b"1"), "close", ok(b"2")])
    c = OrderConn(f"http://127.0.0.1:{srv.port}")
    c.send(c.request_bytes("POST", "/x", b"", b""))
    assert c.read_response()[2] == b"1"
    # The scripted server closes after its next request: a request that is lost.
    c.send(c.request_bytes("POST", "/x", b"", b""))
    with pytest.raises(ResponseLost):
        c.read_response()
    c.send(c.request_bytes("POST", "/x", b"", b""))
    assert c.read_response()[2] == b"2"
    assert srv.accepts == 2


def test_send_when_nothing_listens_then_orderwireerror_not_sent():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    c = OrderConn(f"http://127.0.0.1:{port}", timeout_s=0.5)
    with pytest.raises(OrderWireError):
        c.send(b"POST / HTTP/1.1\r\n\r\n")
