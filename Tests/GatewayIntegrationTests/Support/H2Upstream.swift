import Foundation
import XCTest

/// A real HTTP/2 upstream (Python's `h2` on asyncio; the source is below) as a child process:
/// h2c with prior knowledge, or ALPN h2 over TLS. Its own counts (connections it accepted,
/// requests it took, the most streams it saw open at once on one connection) come from its
/// `/__stats`, asked directly with curl over a connection of its own.
final class H2Upstream {
    let process = Process()
    let port: Int
    private let stdout = Pipe()

    static let script: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("h2upstream-\(getpid()).py")
        try? h2UpstreamSource.write(to: url, atomically: true, encoding: .utf8)
        return url
    }()

    init(_ options: [String] = []) throws {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", "-c", "import h2.connection"]
        check.standardError = FileHandle.nullDevice
        try check.run()
        check.waitUntilExit()
        guard check.terminationStatus == 0 else { throw XCTSkip("Python's h2 is not installed (pip install h2)") }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script.path] + options
        process.standardOutput = stdout
        try process.run()
        var line = Data()
        let deadline = Date().addingTimeInterval(10)
        while !line.contains(0x0A) && Date() < deadline {
            let d = stdout.fileHandleForReading.availableData
            if d.isEmpty { break }
            line.append(d)
        }
        guard let p = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw XCTSkip("the h2 upstream did not start")
        }
        port = p
    }

    /// The server's counts; `connections` and `requests` leave out this question's own.
    func stats(tls: Bool = false) -> [String: Int] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["curl", "-s", "--max-time", "5"] + (tls ? ["-k", "--http2"] : ["--http2-prior-knowledge"])
            + ["\(tls ? "https" : "http")://127.0.0.1:\(port)/__stats"]
        let out = Pipe()
        p.standardOutput = out
        try? p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var counts = (try? JSONSerialization.jsonObject(with: data) as? [String: Int]) ?? [:]
        counts["connections"] = (counts["connections"] ?? 1) - 1
        counts["requests"] = (counts["requests"] ?? 1) - 1
        return counts
    }

    func close() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    deinit { close() }
}

private let h2UpstreamSource = #"""
"""A real HTTP/2 upstream for the gateway's tests (Python's `h2`, asyncio): h2c with prior
knowledge, or ALPN h2 over TLS (--tls CERT KEY). A connection that does not start with the
HTTP/2 preface gets a minimal HTTP/1.1 answer (for useClientProtocol). It prints its port on
the first line of stdout, then serves until killed.

Paths: /echo (the request body back), /big?n=BYTES (a body of that size), /trailers (a
chunked-style answer with trailers), /huge (a response header block of several MiB),
/reset (RST_STREAM INTERNAL_ERROR), /close (the TCP connection dropped), /__stats (JSON counts:
connections accepted, requests taken, the most streams seen open at once on one connection,
streams refused), anything else: "ok <path>". `?delay=MS` delays the answer.

Options: --max-streams N (SETTINGS_MAX_CONCURRENT_STREAMS), --goaway-every N (after N requests
on a connection: GOAWAY with the Nth's id, finish those, ignore later streams, close),
--refuse-every K (every Kth request is refused with RST_STREAM REFUSED_STREAM, unprocessed).
"""
import asyncio
import json
import ssl
import sys
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.errors
import h2.settings

args = sys.argv[1:]


def opt(name, default=None):
    if name in args:
        return args[args.index(name) + 1]
    return default


MAX_STREAMS = int(opt("--max-streams", "1000"))
GOAWAY_EVERY = int(opt("--goaway-every", "0"))
REFUSE_EVERY = int(opt("--refuse-every", "0"))
TLS = "--tls" in args

stats = {"connections": 0, "requests": 0, "maxConcurrent": 0, "refused": 0, "h1": 0}


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8",
                                        validate_inbound_headers=True)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.bodies = {}
        self.headers = {}
        self.open = set()
        self.taken = 0
        self.last_id = None  # set once a GOAWAY went out
        self.waiting_window = {}
        self.closed = False

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    async def run(self, first):
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS})
        self.flush()
        data = first
        while True:
            if data:
                try:
                    events = self.h2.receive_data(data)
                except Exception:
                    self.flush()
                    break
                for e in events:
                    self.event(e)
                self.flush()
            data = await self.reader.read(65536)
            if not data:
                break
        self.closed = True
        self.writer.close()

    def event(self, e):
        if isinstance(e, h2.events.RequestReceived):
            sid = e.stream_id
            if self.last_id is not None and sid > self.last_id:
                return  # above our GOAWAY: never processed
            self.headers[sid] = dict(e.headers)
            self.bodies[sid] = bytearray()
            if REFUSE_EVERY:
                stats.setdefault("seen", 0)
                stats["seen"] += 1
                if stats["seen"] % REFUSE_EVERY == 0:
                    stats["refused"] += 1
                    self.h2.reset_stream(sid, error_code=h2.errors.ErrorCodes.REFUSED_STREAM)
                    self.headers.pop(sid)
                    return
            stats["requests"] += 1
            self.open.add(sid)
            stats["maxConcurrent"] = max(stats["maxConcurrent"], len(self.open))
            self.taken += 1
            if GOAWAY_EVERY and self.taken == GOAWAY_EVERY:
                # A graceful GOAWAY written by hand: h2's own close_connection would refuse
                # every frame after it, the streams it lets finish included.
                self.last_id = sid
                self.flush()
                self.writer.write(b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + sid.to_bytes(4, "big") + b"\x00\x00\x00\x00")
        elif isinstance(e, h2.events.DataReceived):
            if e.stream_id in self.bodies:
                self.bodies[e.stream_id] += e.data
            self.h2.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.StreamEnded):
            if e.stream_id in self.headers:
                asyncio.ensure_future(self.answer(e.stream_id))
        elif isinstance(e, h2.events.StreamReset):
            self.open.discard(e.stream_id)
            self.headers.pop(e.stream_id, None)
        elif isinstance(e, h2.events.WindowUpdated):
            for sid, fut in list(self.waiting_window.items()):
                if not fut.done():
                    fut.set_result(None)

    async def answer(self, sid):
        h = self.headers.get(sid)
        if h is None:
            return
        url = urllib.parse.urlsplit(h.get(":path", "/"))
        q = dict(urllib.parse.parse_qsl(url.query))
        if "delay" in q:
            await asyncio.sleep(int(q["delay"]) / 1000)
        path = url.path
        try:
            if path == "/__stats":
                await self.send(sid, 200, json.dumps(stats).encode())
            elif path == "/echo":
                await self.send(sid, 200, bytes(self.bodies[sid]),
                                extra=[("x-request-te", h.get("te", "")), ("x-request-bytes", str(len(self.bodies[sid])))])
            elif path == "/big":
                await self.send(sid, 200, b"x" * int(q.get("n", "1000000")))
            elif path == "/trailers":
                self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                self.h2.send_data(sid, b"payload")
                self.h2.send_headers(sid, [("grpc-status", "0"), ("x-trailer", "yes")], end_stream=True)
                self.flush()
            elif path == "/huge":
                hs = [(":status", "200")] + [("x-big-%d" % i, "v" * 4000) for i in range(1000)]
                self.h2.send_headers(sid, hs, end_stream=True)
                self.flush()
            elif path == "/reset":
                self.h2.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
                self.flush()
            elif path == "/close":
                self.closed = True
                self.writer.transport.abort()
            else:
                await self.send(sid, 200, ("ok " + path).encode(),
                                extra=[("x-upstream-proto", "h2"), ("x-request-authority", h.get(":authority", "")),
                                       ("x-request-scheme", h.get(":scheme", ""))])
        except Exception:
            pass
        finally:
            self.open.discard(sid)
            self.headers.pop(sid, None)
            self.bodies.pop(sid, None)
            if self.last_id is not None and not self.open and not self.closed:
                self.flush()
                self.closed = True
                self.writer.close()

    async def send(self, sid, status, body, extra=()):
        self.h2.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body)))] + list(extra))
        self.flush()
        i = 0
        while i < len(body) or (i == 0 and not body):
            if not body:
                self.h2.send_data(sid, b"", end_stream=True)
                break
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                fut = asyncio.get_event_loop().create_future()
                self.waiting_window[sid] = fut
                await fut
                del self.waiting_window[sid]
                continue
            chunk = body[i:i + window]
            i += len(chunk)
            self.h2.send_data(sid, chunk, end_stream=i >= len(body))
            self.flush()
            await self.writer.drain()
        self.flush()


async def serve(reader, writer):
    stats["connections"] += 1
    first = await reader.read(65536)
    if first and not first.startswith(b"PRI * HTTP/2.0"):
        # An HTTP/1.1 request: one plain answer per request, keep-alive.
        stats["h1"] += 1
        data = first
        while data:
            while b"\r\n\r\n" not in data:
                more = await reader.read(65536)
                if not more:
                    writer.close()
                    return
                data += more
            head, _, data = data.partition(b"\r\n\r\n")
            body = b"ok h1"
            writer.write(b"HTTP/1.1 200 OK\r\nx-upstream-proto: h1\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            if not data:
                data = await reader.read(65536)
        writer.close()
        return
    await Conn(reader, writer).run(first)


async def main():
    context = None
    if TLS:
        i = args.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[i + 1], args[i + 2])
        context.set_alpn_protocols(["h2"])
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""#
