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
from holdconns import Holder, parser

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "


class Conn:
    __slots__ = ("sock", "connecting", "sent_at", "status")

    def __init__(self, sock):
        self.sock = sock
        self.connecting = True
        self.sent_at = 0.0
        self.status = None


class PartialHeadHolder(Holder):
    """in_flight: connects under way."""

    name = "hold-partial-heads"
    request = HEAD

    def __init__(self, args):
        super().__init__(args)
        self.closed_after = []

    def conn(self, sock):
        return Conn(sock)

    def sent(self, c, now):
        self.in_flight -= 1
        c.sent_at = now
        self.held += 1

    def readable(self, c, data, now):
        if data:
            if c.status is None:
                parts = data.split(b" ", 2)
                c.status = parts[1].decode("ascii", "replace") if data.startswith(b"HTTP/") and len(parts) > 1 else "junk"
            return
        self.closed += 1
        self.closed_after.append(now - c.sent_at)
        self.statuses[c.status or "none"] += 1
        self.drop(c)

    def more_counts(self, line):
        if self.closed_after:
            s = sorted(self.closed_after)
            line["closed_after_min"] = f"{s[0]:.2f}"
            line["closed_after_median"] = f"{s[len(s) // 2]:.2f}"
            line["closed_after_max"] = f"{s[-1]:.2f}"


def main():
    PartialHeadHolder(parser(__doc__, "connects under way at once (default 256)").parse_args()).run()


if __name__ == "__main__":
    main()
