#!/usr/bin/env python3
"""Open N connections to a proxy and send on each an unfinished request head, then hold them.

    loadtest/hold-partial-heads.py PORT [-n 10000] [--host 127.0.0.1] [--status FILE]

Each connection sends `GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: ` and nothing more, so the proxy
waits for the rest of the head until its request-header timeout. At most --in-flight connects are
under way at once, so the proxy's accept queue does not overflow and SYNs are not retried.

The counts are rewritten to --status (one line of key=value) every half second, and printed on
stdout once every connection has been tried and again on SIGTERM/SIGINT:
  tried, held (connected and head sent), failed (connect or send refused), open (held and not
  closed by the proxy), closed (the proxy ended it: EOF or reset), status_<code> (the answer it
  wrote before closing, e.g. status_408; status_none when it closed without one), and
  closed_after_min/median/max: seconds from a connection's head to the proxy closing it, and
  connect_seconds: how long opening them all took.
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

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "


class Conn:
    __slots__ = ("sock", "connecting", "sent_at", "status")

    def __init__(self, sock):
        self.sock = sock
        self.connecting = True
        self.sent_at = 0.0
        self.status = None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("port", type=int)
    p.add_argument("-n", type=int, default=10000, help="connections (default 10000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--in-flight", type=int, default=256, help="connects under way at once (default 256)")
    p.add_argument("--status", help="file rewritten every 0.5 s with the counts")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 16 > hard:
        sys.exit(f"hold-partial-heads: {args.n} connections need {args.n + 16} descriptors, the limit is {hard}")

    stop = False

    def on_signal(_signo, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    tried = held = failed = closed = connecting = 0
    statuses = Counter()
    closed_after = []
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
        if closed_after:
            s = sorted(closed_after)
            line["closed_after_min"] = f"{s[0]:.2f}"
            line["closed_after_median"] = f"{s[len(s) // 2]:.2f}"
            line["closed_after_max"] = f"{s[-1]:.2f}"
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
        while tried < args.n and connecting < args.in_flight:
            tried += 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((args.host, args.port))
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, Conn(s))
            connecting += 1
        try:
            events = sel.select(timeout=0.5)
        except InterruptedError:
            events = []
        now = time.monotonic()
        for key, _mask in events:
            c = key.data
            if c.connecting:
                connecting -= 1
                c.connecting = False
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    failed += 1
                    drop(c)
                    continue
                try:
                    c.sock.send(HEAD)
                except OSError:
                    failed += 1
                    drop(c)
                    continue
                c.sent_at = now
                held += 1
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""  # reset by the proxy
            if data:
                if c.status is None:
                    parts = data.split(b" ", 2)
                    c.status = parts[1].decode("ascii", "replace") if data.startswith(b"HTTP/") and len(parts) > 1 else "junk"
                continue
            closed += 1
            closed_after.append(now - c.sent_at)
            statuses[c.status or "none"] += 1
            drop(c)
        if not announced and tried == args.n and connecting == 0:
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
