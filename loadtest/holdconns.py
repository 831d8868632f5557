"""The loop shared by hold-idle.py and hold-partial-heads.py: open N connections to a proxy, at
most --in-flight of them under way at once, hand each to the holder's hooks, count, and write the
counts to --status every half second and to stdout once every connection was tried and settled
(and again on SIGTERM/SIGINT). Not run on its own."""
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


class Holder:
    """Counts and the loop; a holder overrides the hooks (sent, readable, more_counts)."""

    name = "holder"
    request = b""

    def __init__(self, args):
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.tried = self.held = self.failed = self.closed = 0
        self.in_flight = 0  # connections the holder still waits for (counted against --in-flight)
        self.statuses = Counter()
        self.connect_seconds = None

    # hooks
    def sent(self, c, now):
        """c's request went out."""

    def readable(self, c, data, now):
        """The proxy sent data on c (b"" when it closed or reset it)."""

    def more_counts(self, line):
        pass

    def counts(self):
        line = {"tried": self.tried, "held": self.held, "failed": self.failed,
                "open": self.held - self.closed, "closed": self.closed}
        if self.connect_seconds is not None:
            line["connect_seconds"] = f"{self.connect_seconds:.2f}"
        self.more_counts(line)
        for code, n in sorted(self.statuses.items()):
            line[f"status_{code}"] = n
        return " ".join(f"{k}={v}" for k, v in line.items())

    def write_status(self):
        if not self.args.status:
            return
        tmp = self.args.status + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.counts() + "\n")
        os.replace(tmp, self.args.status)

    def drop(self, c):
        self.sel.unregister(c.sock)
        c.sock.close()

    def fail(self, c):
        self.failed += 1
        self.drop(c)

    def run(self):
        args = self.args
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if args.n + 16 > hard:
            sys.exit(f"{self.name}: {args.n} connections need {args.n + 16} descriptors, the limit is {hard}")

        stop = False

        def on_signal(_signo, _frame):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        announced = False
        last_status = 0.0
        started = time.monotonic()
        sel = self.sel
        while not stop:
            while self.tried < args.n and self.in_flight < args.in_flight:
                self.tried += 1
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex((args.host, args.port))
                if err not in (0, errno.EINPROGRESS):
                    self.failed += 1
                    s.close()
                    continue
                sel.register(s, selectors.EVENT_WRITE, self.conn(s))
                self.in_flight += 1
            try:
                events = sel.select(timeout=0.5)
            except InterruptedError:
                events = []
            now = time.monotonic()
            for key, _mask in events:
                c = key.data
                if c.connecting:
                    c.connecting = False
                    if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        self.connect_failed(c)
                        continue
                    try:
                        c.sock.send(self.request)
                    except OSError:
                        self.connect_failed(c)
                        continue
                    self.sent(c, now)
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                try:
                    data = c.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # reset by the proxy
                self.readable(c, data, now)
            if not announced and self.tried == args.n and self.in_flight == 0:
                announced = True
                self.connect_seconds = now - started
                print(self.counts(), flush=True)
            if now - last_status >= 0.5:
                last_status = now
                self.write_status()

        self.write_status()
        print(self.counts(), flush=True)

    def conn(self, sock):
        raise NotImplementedError

    def connect_failed(self, c):
        self.in_flight -= 1
        self.fail(c)


def parser(doc, in_flight_help):
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("port", type=int)
    p.add_argument("-n", type=int, default=10000, help="connections (default 10000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--in-flight", type=int, default=256, help=in_flight_help)
    p.add_argument("--status", help="file rewritten every 0.5 s with the counts")
    return p
