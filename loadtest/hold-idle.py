#!/usr/bin/env python3
"""Open N keep-alive connections to a proxy, send one complete request on each, then hold them idle.

    loadtest/hold-idle.py PORT [-n 10000] [--host 127.0.0.1] [--path /] [--status FILE]

Each connection sends `GET PATH HTTP/1.1` with a Host header, reads the whole answer (its head and
Content-Length bytes of body) and then sends nothing more: the proxy holds an idle keep-alive
connection, as it does between a browser's requests. At most --in-flight connections are being
opened or waiting for their answer at once, so the proxy's accept queue does not overflow.

The counts are rewritten to --status (one line of key=value) every half second, and printed on
stdout once every connection has been tried and answered, and again on SIGTERM/SIGINT:
  tried, held (answered and kept open), failed (connect refused, reset or closed before the whole
  answer), open (held and not closed by the proxy since), closed (held, then ended by the proxy),
  status_<code> (the answers' status codes), connect_seconds (how long opening them all took).
"""
from holdconns import Holder, parser


class Conn:
    __slots__ = ("sock", "connecting", "answering", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.connecting = True  # -> answering -> held
        self.answering = False
        self.buf = b""


def answer_complete(buf):
    """The status code once buf holds a whole answer (head and Content-Length body), else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if len(buf) - (end + 4) < length:
        return None
    parts = head[0].split(" ", 2)
    return parts[1] if len(parts) > 1 else "junk"


class IdleHolder(Holder):
    """in_flight: connections opening or awaiting their answer."""

    name = "hold-idle"

    def __init__(self, args):
        super().__init__(args)
        self.request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()

    def conn(self, sock):
        return Conn(sock)

    def sent(self, c, now):
        c.answering = True

    def readable(self, c, data, now):
        if c.answering:
            if not data:
                self.in_flight -= 1
                self.fail(c)
                return
            c.buf += data
            status = answer_complete(c.buf)
            if status is not None:
                self.in_flight -= 1
                self.held += 1
                self.statuses[status] += 1
                c.answering = False
                c.buf = b""
            return
        if not data:  # a held connection the proxy ended
            self.closed += 1
            self.drop(c)


def main():
    p = parser(__doc__, "connections opening or awaiting their answer at once (default 256)")
    p.add_argument("--path", default="/")
    IdleHolder(p.parse_args()).run()


if __name__ == "__main__":
    main()
