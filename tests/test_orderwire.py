"""orderwire.py against a tiny local HTTP/1.1 server: keep-alive, chunked, stale reconnect, lost response."""
import socket
import threading

import numpy as np
import pytest

import orderkern
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


# -- leg0_send = kernel: the kernel writes on the descriptor OrderConn keeps in its cell ------

def _kernel_write(c, req: bytes):
    """What orderkern.send_built does with a built request: peek_send on the cell's fd."""

    fd = int(c.kernel_cell["fd"][0])
    buf = np.frombuffer(req, np.uint8).copy()
    return fd, orderkern.wire_write(fd, int(c.kernel_cell["ssl"][0]), buf, len(req), np.zeros(1, np.uint8),
                                    orderkern.tls_fns(), np.zeros(1, np.int64))


def _kernel_conn(script):
    """A scripted server and a connected OrderConn whose descriptor cell is attached."""
    srv = Server(script)
    c = OrderConn(f"http://127.0.0.1:{srv.port}")
    c.attach_kernel(orderkern.cell())
    c.connect()
    return srv, c


def test_kernel_cell_when_connection_changes_then_it_names_the_current_plain_descriptor():
    srv = Server([ok(b"a")])
    c = OrderConn(f"http://127.0.0.1:{srv.port}")
    cell = orderkern.cell()
    cell["fd"] = 7
    c.attach_kernel(cell)
    assert cell["fd"][0] == -1             # no connection yet: never a stale number
    c.connect()
    first = c.wire
    assert cell["fd"][0] == first.fd and cell["ssl"][0] == 0
    assert c.refresh(max_idle_s=1e-9).startswith("idle")
    assert c.wire is not first and cell["fd"][0] == c.wire.fd
    assert c.prev_wire is first            # kept open: a kernel write may have used it
    c.close()
    assert cell["fd"][0] == -1 and c.prev_wire is None


def test_kernel_write_when_connection_idle_then_request_out_and_response_read():
    srv, c = _kernel_conn([ok(b"k"), ok(b"p")])
    req = c.request_bytes("POST", "/x", b"", b"{}")
    fd, n = _kernel_write(c, req)
    assert n == len(req)
    c.kernel_sent(fd, n, req, 1)
    assert c.read_response()[2] == b"k"
    c.send(req)                            # the Python path on the same connection after it
    assert c.read_response()[2] == b"p" and srv.accepts == 1


def test_kernel_write_when_refresh_swapped_connection_then_response_read_from_the_one_written():
    srv, c = _kernel_conn([ok(b"old")])
    req = c.request_bytes("POST", "/x", b"", b"{}")
    fd, n = _kernel_write(c, req)
    assert n == len(req)
    # the executor's refresh swaps the connection before fire_leg0 notes the write
    assert c.refresh(max_idle_s=1e-9)
    assert c.wire.fd != fd
    c.kernel_sent(fd, n, req, 1)
    assert c.read_response()[2] == b"old"


def test_kernel_write_when_connection_unknown_then_response_lost_not_misread():
    srv, c = _kernel_conn([ok(b"x")])
    req = c.request_bytes("POST", "/x", b"", b"{}")
    # a descriptor that is neither the current nor the previous connection's: the order's
    # state is unknown (the executor asks REST), never read off another connection
    assert c.kernel_sent(c.wire.fd + 1000, len(req), req, 5) == 5
    with pytest.raises(ResponseLost):
        c.read_response()
    with pytest.raises(OrderWireError):    # part of a request on a lost connection: not sent
        c.kernel_sent(c.wire.fd + 1000, 3, req, 5)


def test_kernel_write_when_venue_closed_idle_connection_then_nothing_written_and_send_reconnects():
    import time

    srv, c = _kernel_conn([ok(b"1")])     # answers once, then closes the idle connection
    req = c.request_bytes("POST", "/x", b"", b"{}")
    c.send(req)
    assert c.read_response()[2] == b"1"
    time.sleep(0.2)                        # the venue's FIN arrives
    _fd, n = _kernel_write(c, req)
    assert n == orderkern.SENT_STALE       # nothing written on a closed connection
    c.send(req)                            # fire_leg0's fallback: reconnect, then write
    assert c.inline_reconnects == 1 and c.kernel_cell["fd"][0] == c.wire.fd


def test_kernel_write_when_socket_takes_part_then_rest_written_by_kernel_sent():
    srv, c = _kernel_conn([ok(b"whole")])
    req = c.request_bytes("POST", "/x", b"", b'{"a":"' + b"x" * 200 + b'"}')
    fd = int(c.kernel_cell["fd"][0])
    head = np.frombuffer(req[:50], np.uint8).copy()
    assert orderkern.wire_write(fd, 0, head, 50, np.zeros(1, np.uint8), orderkern.tls_fns(), np.zeros(1, np.int64)) == 50
    c.kernel_sent(fd, 50, req, 1)          # as if the socket took 50 bytes of the request
    assert c.read_response()[2] == b"whole"
    assert srv.requests[0] == req
