import HTTP1Wire
import NIOCore

/// The client side of one request as the router filter sees it: an HTTP/1.1 connection today,
/// an HTTP/2 stream later (Envoy's `StreamDecoderFilterCallbacks`). The stream encodes what the
/// filter sends in its own protocol and makes the connection's decisions (keep-alive, close,
/// de-chunking for HTTP/1.0); the filter decides what the answer is.
protocol DownstreamStream: AnyObject {
    /// The client's address as X-Forwarded-For and the per-client rate limit see it.
    var clientAddress: String { get }
    /// The client's connection is TLS: the request's scheme is https.
    var isSecure: Bool { get }
    /// Whether the client takes response bytes as fast as they come (under the high watermark).
    var isWritable: Bool { get }
    /// The whole request body has arrived.
    var requestComplete: Bool { get }
    /// Bytes of the response encoded so far, for the access log.
    var responseBytesSent: Int { get }
    /// The request is an HTTP/2 stream's (the access log's protocol).
    var isHTTP2: Bool { get }
    /// The request is a gRPC call (content-type application/grpc on an HTTP/2 stream): the
    /// stream answers the gateway's own replies as gRPC errors, and knows the call's status.
    var isGRPC: Bool { get }
    /// The `grpc-status` the call ended with, once the stream has seen it (nil otherwise).
    var grpcStatus: Int? { get }

    /// Flow control: the upstream takes the request body slower than the client sends it.
    func pauseReading()
    func resumeReading()

    /// A 1xx interim response, passed on at once.
    func encodeInterimHead(_ bytes: ByteBuffer)
    /// The upstream's final response head; `upstreamServiceMs` becomes `x-envoy-upstream-service-time`.
    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int)
    /// Response body bytes as the upstream framed them.
    func encodeBody(_ part: ByteBuffer)
    /// An upstream read batch is over: what was encoded goes to the client now.
    func flushResponse()
    /// A response the gateway makes itself; `forceClose`: the connection closes after it.
    func encodeLocalReply(status: Int, body: String, headers: [(String, String)], forceClose: Bool)
    /// The response is over. `reset`: it was cut off (the upstream broke off, a timeout after
    /// the head was sent), so the client must not wait for more: the connection closes.
    func endStream(reset: Bool)

    /// The connection's remote and local address (with ports), for values that must be the same
    /// on every request of the connection (a generated affinity cookie).
    var connectionAddresses: String { get }
    /// A header for the next upstream response head (`encodeHead`), after the upstream's own.
    func addResponseHeader(name: String, value: String)
    /// The port the request came in on (VirtualService match `port`, redirect `FROM_REQUEST_PORT`).
    var localPort: Int { get }
    /// `encodeHead` for a route that changes response headers (`edit`).
    func encodeHead(_ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming, upstreamServiceMs: Int,
                    edit: ResponseHeadEdit)
    /// A reply the gateway makes on a route with transforms: a body of bytes (`directResponse`),
    /// the route's response header edit.
    func encodeLocalReply(status: Int, body: [UInt8], headers: [(String, String)], edit: ResponseHeadEdit?,
                          forceClose: Bool)

    /// The upstream's 101 to a WebSocket upgrade, for the client.
    func encodeSwitchingProtocols(_ head: MessageHead, bytes: ByteBuffer)
    /// The client's end of a tunnel, once the 101 is encoded.
    var tunnelEnd: TunnelEnd { get }
    /// From now on every byte is `tunnel`'s: the 101 goes out, and bytes the client sent behind
    /// its upgrade request go to the upstream.
    func startTunnel(_ tunnel: UpgradeTunnel)

    /// A buffer for the upstream head, recycled per connection (`recycle` gives it back).
    func headBuffer(capacity: Int) -> ByteBuffer
    func recycle(_ buffer: ByteBuffer)
}

extension DownstreamStream {
    var isSecure: Bool { false }
    var isGRPC: Bool { false }
    var grpcStatus: Int? { nil }
}
