import Atomics
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A real HTTP/1.1 upstream on 127.0.0.1 (port from 0) whose behaviour a test sets: status,
/// delay, body. It counts the requests it saw and records their heads and bodies.
final class TestUpstream: @unchecked Sendable {
    struct Behaviour: Sendable {
        var status: Int = 200
        var delay: TimeAmount = .zero
        var body: String = "{\"ok\":true}"
        /// Answer as soon as the head arrives, without reading the body (as nginx's `return` does).
        var answerBeforeBody = false
    }

    struct Seen: Sendable {
        var method: String
        var uri: String
        var headers: [(String, String)]
        var body: String
    }

    let group: EventLoopGroup
    private(set) var channel: Channel!
    let requests = ManagedAtomic<Int>(0)
    let connections = ManagedAtomic<Int>(0)
    /// Connections that have closed (either side), so tests can see pooled connections go.
    let closedConnections = ManagedAtomic<Int>(0)
    let concurrent = ManagedAtomic<Int>(0)
    let maxConcurrent = ManagedAtomic<Int>(0)
    private let behaviour: NIOLockedValueBox<Behaviour>
    private let seen = NIOLockedValueBox<[Seen]>([])

    /// `host`/`port`: where to listen (another loopback address lets two upstreams share a port).
    init(group: EventLoopGroup, _ behaviour: Behaviour = Behaviour(), host: String = "127.0.0.1", port: Int = 0) throws {
        self.group = group
        self.behaviour = NIOLockedValueBox(behaviour)
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] ch in
                connections.wrappingIncrement(ordering: .relaxed)
                ch.closeFuture.whenComplete { [self] _ in closedConnections.wrappingIncrement(ordering: .relaxed) }
                return ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                    try ch.pipeline.syncOperations.addHandler(Handler(upstream: self))
                }
            }
            .bind(host: host, port: port).wait()
    }

    var port: Int { channel.localAddress!.port! }
    var seenRequests: [Seen] { seen.withLockedValue { $0 } }

    func set(_ change: (inout Behaviour) -> Void) { behaviour.withLockedValue { change(&$0) } }

    func close() { try? channel.close().wait() }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let upstream: TestUpstream
        var head: HTTPRequestHead?
        var body = ""
        init(upstream: TestUpstream) { self.upstream = upstream }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = ""
                if upstream.behaviour.withLockedValue({ $0.answerBeforeBody }) {
                    upstream.requests.wrappingIncrement(ordering: .relaxed)
                    var headers = HTTPHeaders()
                    headers.add(name: "content-length", value: "5")
                    context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "early")))), promise: nil)
                    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                    self.head = nil
                }
            case .body(let b):
                body += String(buffer: b)
            case .end:
                guard let head else { return }
                let u = upstream
                u.requests.wrappingIncrement(ordering: .relaxed)
                let now = u.concurrent.wrappingIncrementThenLoad(ordering: .relaxed)
                var m = u.maxConcurrent.load(ordering: .relaxed)
                while now > m {
                    let (done, orig) = u.maxConcurrent.compareExchange(expected: m, desired: now, ordering: .relaxed)
                    if done { break }
                    m = orig
                }
                u.seen.withLockedValue {
                    $0.append(Seen(method: head.method.rawValue, uri: head.uri,
                                   headers: head.headers.map { ($0.name, $0.value) }, body: body))
                }
                let b = u.behaviour.withLockedValue { $0 }
                let keepAlive = head.isKeepAlive
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                let respond = {
                    let context = ctx.value
                    u.concurrent.wrappingDecrement(ordering: .relaxed)
                    var headers = HTTPHeaders()
                    headers.add(name: "content-type", value: "application/json")
                    headers.add(name: "content-length", value: String(b.body.utf8.count))
                    headers.add(name: "connection", value: "keep-alive")  // hop-by-hop: the gateway must drop it
                    context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(
                        version: .http1_1, status: .init(statusCode: b.status), headers: headers))), promise: nil)
                    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: b.body)))), promise: nil)
                    let f = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
                    if !keepAlive { f.whenComplete { _ in ctx.value.close(promise: nil) } }
                }
                if b.delay > .zero {
                    context.eventLoop.assumeIsolated().scheduleTask(in: b.delay) { respond() }
                } else {
                    respond()
                }
            }
        }
    }
}

/// A port nothing listens on (bound, then closed), for connect-failure tests.
func refusedPort() throws -> Int {
    let group = MultiThreadedEventLoopGroup.singleton
    let ch = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
    let port = ch.localAddress!.port!
    try ch.close().wait()
    return port
}
