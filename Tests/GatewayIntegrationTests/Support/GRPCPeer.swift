import Foundation

/// The Python side of the gRPC tests, written to a temporary file: an HTTP/1.1 upstream that
/// answers gRPC-shaped responses (chunked bodies, trailers), a gRPC client on Python's grpcio
/// (generic methods with raw bytes, no protobuf), and a raw HTTP/2 client on Python's h2 for
/// what grpcio cannot do (request trailers, a `grpc-timeout` with no client deadline).
let grpcPeerSource = #"""
import json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def frame(payload):
    return b"\x00" + len(payload).to_bytes(4, "big") + payload

def unframe(data):
    out = []
    while len(data) >= 5:
        n = int.from_bytes(data[1:5], "big")
        out.append(data[5:5 + n])
        data = data[5 + n:]
    return out

# ---- upstream: HTTP/1.1, gRPC-shaped answers by method ----
#   /test.Echo/Unary    the request's messages back, upper-cased; trailers grpc-status 0 and x-trailer
#   /test.Echo/Stream   three messages in three chunks, 50 ms apart; trailers grpc-status 0
#   /test.Echo/NotFound no message; trailers grpc-status 5, grpc-message
#   /test.Echo/Flaky    trailers-only UNAVAILABLE (grpc-status 14 in the head) to every second call
#   /test.Echo/Slow     answers after 3 s
# Every request is printed as a JSON line: path, headers, messages, trailers.
flaky = {"n": 0}
lock = threading.Lock()

class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass

    def read_body(self):
        trailers = {}
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        k, v = line.decode().split(":", 1)
                        trailers[k.strip().lower()] = v.strip()
                    return body, trailers
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0"))
        return self.rfile.read(n), trailers

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    def start(self):
        self.send_response(200)
        self.send_header("content-type", "application/grpc")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def finish_call(self, status, message=None, extra=()):
        t = b"0\r\ngrpc-status: %d\r\n" % status
        if message:
            t += b"grpc-message: " + message.encode() + b"\r\n"
        for k, v in extra:
            t += k.encode() + b": " + v.encode() + b"\r\n"
        self.wfile.write(t + b"\r\n")
        self.wfile.flush()

    def do_POST(self):
        body, trailers = self.read_body()
        messages = unframe(body)
        print(json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                          "messages": [m.decode("latin-1") for m in messages], "trailers": trailers}), flush=True)
        method = self.path.rsplit("/", 1)[-1]
        if method == "Unary":
            self.start()
            for m in messages:
                self.chunk(frame(m.upper()))
            self.finish_call(0, extra=[("x-trailer", "yes")])
        elif method == "Stream":
            self.start()
            for k in range(3):
                self.chunk(frame(b"part-%d" % k))
                time.sleep(0.05)
            self.finish_call(0)
        elif method == "NotFound":
            self.start()
            self.finish_call(5, "no such thing")
        elif method == "Flaky":
            with lock:
                flaky["n"] += 1
                fail = flaky["n"] % 2 == 1
            if fail:
                self.send_response(200)
                self.send_header("content-type", "application/grpc")
                self.send_header("grpc-status", "14")
                self.send_header("grpc-message", "try again")
                self.send_header("content-length", "0")
                self.end_headers()
            else:
                self.start()
                self.chunk(frame(b"second time lucky"))
                self.finish_call(0)
        elif method == "Slow":
            time.sleep(3)
            self.start()
            self.finish_call(0)
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

def upstream(port):
    server = ThreadingHTTPServer(("127.0.0.1", port), Upstream)
    server.daemon_threads = True
    print(json.dumps({"ready": True}), flush=True)
    server.serve_forever()

# ---- grpcio client ----
def channel(target, ca, name):
    import grpc
    if ca:
        creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
        return grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", name)])
    return grpc.insecure_channel(target)

def outcome(call_or_error):
    return {"code": call_or_error.code().name, "details": call_or_error.details(),
            "trailing": {k: v for k, v in (call_or_error.trailing_metadata() or [])}}

def client(argv):
    import grpc
    mode, target, method = argv[0], argv[1], argv[2]
    opts = dict(a.split("=", 1) for a in argv[3:])
    ch = channel(target, opts.get("ca"), opts.get("name", ""))
    timeout = float(opts["timeout"]) if "timeout" in opts else 20
    payload = opts.get("payload", "hello").encode()
    if mode == "unary":
        rpc = ch.unary_unary(method)
        try:
            reply, call = rpc.with_call(payload, timeout=timeout)
            out = outcome(call)
            out["replies"] = [reply.decode()]
        except grpc.RpcError as e:
            out = outcome(e)
            out["replies"] = []
    elif mode == "stream":
        call = ch.unary_stream(method)(payload, timeout=timeout)
        replies = []
        try:
            for r in call:
                replies.append(r.decode())
        except grpc.RpcError:
            pass
        out = outcome(call)
        out["replies"] = replies
    elif mode == "many":
        rpc = ch.unary_unary(method)
        futures = [rpc.future(payload, timeout=timeout) for _ in range(int(opts["n"]))]
        codes = []
        for f in futures:
            try:
                f.result()
                codes.append("OK")
            except grpc.RpcError as e:
                codes.append(e.code().name)
        out = {"codes": codes}
    print(json.dumps(out), flush=True)

# ---- raw HTTP/2 client (h2c prior knowledge) ----
def raw(argv):
    import h2.config, h2.connection, h2.events
    port, path = int(argv[0]), argv[1]
    headers, trailers, body = [], [], b"hi"
    for a in argv[2:]:
        kind, kv = a.split(":", 1)
        if kind == "b":
            body = kv.encode()
            continue
        k, v = kv.split("=", 1)
        if kind == "h":
            headers.append((k, v))
        elif kind == "t":
            trailers.append((k, v))
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                                                    validate_outbound_headers=False))
    c.initiate_connection()
    i = c.get_next_available_stream_id()
    c.send_headers(i, [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port), (":path", path),
                       ("content-type", "application/grpc"), ("te", "trailers")] + headers)
    c.send_data(i, frame(body))
    if trailers:
        c.send_headers(i, trailers, end_stream=True)
    else:
        c.end_stream(i)
    s.sendall(c.data_to_send())
    started = time.time()
    out = {"status": None, "headers": {}, "trailers": {}, "messages": [], "ended": False, "reset": None, "frames": []}
    data_bytes = b""
    while not out["ended"]:
        d = s.recv(65536)
        if not d:
            break
        for e in c.receive_data(d):
            if isinstance(e, h2.events.ResponseReceived):
                out["frames"].append("HEADERS" + (" END_STREAM" if e.stream_ended else ""))
                for n, v in e.headers:
                    if n == ":status":
                        out["status"] = int(v)
                    else:
                        out["headers"][n] = v
            elif isinstance(e, h2.events.TrailersReceived):
                out["frames"].append("TRAILERS")
                out["trailers"] = {n: v for n, v in e.headers}
            elif isinstance(e, h2.events.DataReceived):
                out["frames"].append("DATA")
                data_bytes += e.data
                c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                out["ended"] = True
            elif isinstance(e, h2.events.StreamReset):
                out["reset"] = int(e.error_code)
                out["ended"] = True
        s.sendall(c.data_to_send())
    out["messages"] = [m.decode("latin-1") for m in unframe(data_bytes)]
    out["seconds"] = time.time() - started
    print(json.dumps(out), flush=True)

# ---- grpcio server: the same methods as the HTTP/1.1 upstream, on Python's gRPC stack ----
def grpc_server():
    import grpc
    from concurrent import futures
    def unary(request, context):
        context.set_trailing_metadata([("x-trailer", "yes")])
        print(json.dumps({"method": "Unary"}), flush=True)
        return request.upper()
    def stream(request, context):
        print(json.dumps({"method": "Stream"}), flush=True)
        for k in range(3):
            yield b"part-%d" % k
            time.sleep(0.05)
    def flaky_call(request, context):
        with lock:
            flaky["n"] += 1
            fail = flaky["n"] % 2 == 1
        print(json.dumps({"method": "Flaky", "failed": fail}), flush=True)
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        return b"second time lucky"
    def slow(request, context):
        print(json.dumps({"method": "Slow"}), flush=True)
        time.sleep(1)
        return b"slow"
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Flaky": grpc.unary_unary_rpc_method_handler(flaky_call),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"ready": True, "port": port}), flush=True)
    server.wait_for_termination()

if __name__ == "__main__":
    if sys.argv[1] == "upstream":
        upstream(int(sys.argv[2]))
    elif sys.argv[1] == "grpc-server":
        grpc_server()
    elif sys.argv[1] == "raw":
        raw(sys.argv[2:])
    else:
        client(sys.argv[1:])
"""#
