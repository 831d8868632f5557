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
import argparse
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time
from collections import Counter


class Conn:
    __slots__ = ("sock", "state", "buf")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # -> "answering" -> "held"
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("port", type=int)
    p.add_argument("-n", type=int, default=10000, help="connections (default 10000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--path", default="/")
    p.add_argument("--in-flight", type=int, default=256, help="connections opening or awaiting their answer at once (default 256)")
    p.add_argument("--status", help="file rewritten every 0.5 s with the counts")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 16 > hard:
        sys.exit(f"hold-idle: {args.n} connections need {args.n + 16} descriptors, the limit is {hard}")

    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    stop = False

    def on_signal(_signo, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    tried = held = failed = closed = pending = 0
    statuses = Counter()
    announced = False
    last_status = 0.0
    started = time.monotonic()
    connect_seconds = None

    def counts():
        line = {"tried": tried, "held": held, "failed": failed, "open": held - closed, "closed": closed}
        if connect_seconds is not None:
            line["connect_seconds"] = f"{connect_seconds:.2f}"
        for code, n in sorted(statuses.items()):
            line[f"status_{code}"] = n
        return " ".join(f"{k}={v}" for k, v in line.items())

    def write_status():
        if not args.status:
            return
        tmp = args.status + ".tmp"
        with open(tmp, "w") as f:
            f.write(counts() + "\n")
        os.replace(tmp, args.status)

    def drop(c):
        sel.unregister(c.sock)
        c.sock.close()

    while not stop:
        while tried < args.n and pending < args.in_flight:
            tried += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((args.host, args.port))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, Conn(s))
            pending += 1
        try:
            events = sel.select(timeout=0.5)
        except InterruptedError:
            events = []
        now = time.monotonic()
        for key, _mask in events:
            c = key.data
            if c.state == "connecting":
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    pending -= 1
                    failed += 1
                    drop(c)
                    continue
                try:
                    c.sock.send(request)
                except OSError:
                    pending -= 1
                    failed += 1
                    drop(c)
                    continue
                c.state = "answering"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""  # reset by the proxy
            if c.state == "answering":
                if not data:
                    pending -= 1
                    failed += 1
                    drop(c)
                    continue
                c.buf += data
                status = answer_complete(c.buf)
                if status is not None:
                    pending -= 1
                    held += 1
                    statuses[status] += 1
                    c.state = "held"
                    c.buf = b""
                continue
            if not data:  # a held connection the proxy ended
                closed += 1
                drop(c)
        if not announced and tried == args.n and pending == 0:
            announced = True
            connect_seconds = now - started
            print(counts(), flush=True)
        if now - last_status >= 0.5:
            last_status = now
            write_status()

    write_status()
    print(counts(), flush=True)


if __name__ == "__main__":
    main()
