import Atomics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A real HTTP server on 127.0.0.1 (port from 0) that counts what it was sent, like an
/// access log: requests, methods and bodies. It can delay answers or cut them off.
final class CountingServer: @unchecked Sendable {
    /// `.statusEvery(s, n)`: every n-th request (by arrival) is answered with status s.
    enum Mode: Sendable { case ok, closeMidResponse, status(Int), statusEvery(Int, Int) }
    let requests = ManagedAtomic(0)
    let posts = ManagedAtomic(0)
    private let bodies = NIOLockedValueBox<[String]>([])
    /// Every request as "METHOD uri body", in arrival order.
    private let log = NIOLockedValueBox<[String]>([])
    private let delays = NIOLockedValueBox<[Int: TimeAmount]>([:])
    /// Every answer waits this long (a slow upstream).
    let everyDelay: TimeAmount
    let mode: Mode
    var channel: Channel!

    init(mode: Mode = .ok, delay: TimeAmount = .zero) throws {
        self.mode = mode
        everyDelay = delay
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                    try ch.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    var port: Int { channel.localAddress!.port! }
    var url: String { "http://127.0.0.1:\(port)/" }
    var seenBodies: [String] { bodies.withLockedValue { $0 } }
    var seen: [String] { log.withLockedValue { $0 } }
    /// Forgets what was counted (for the next client).
    func reset() {
        requests.store(0, ordering: .relaxed)
        posts.store(0, ordering: .relaxed)
        bodies.withLockedValue { $0 = [] }
        log.withLockedValue { $0 = [] }
    }
    /// Delays the n-th request (1-based) by `amount`.
    func delay(request n: Int, by amount: TimeAmount) { delays.withLockedValue { $0[n] = amount } }
    func close() { try? channel.close().wait() }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: CountingServer
        var method = HTTPMethod.GET
        var uri = ""
        var body = ""
        init(server: CountingServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                method = h.method
                uri = h.uri
                body = ""
            case .body(let b):
                body += String(buffer: b)
            case .end:
                let entry = "\(method.rawValue) \(uri) \(body)"
                server.log.withLockedValue { $0.append(entry) }
                let n = server.requests.wrappingIncrementThenLoad(ordering: .relaxed)
                if method == .POST {
                    server.posts.wrappingIncrement(ordering: .relaxed)
                    let b = body
                    server.bodies.withLockedValue { $0.append(b) }
                }
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                let mode = server.mode
                let answer = {
                    let context = ctx.value
                    switch mode {
                    case .closeMidResponse:
                        var h = HTTPHeaders()
                        h.add(name: "content-length", value: "100")
                        context.write(NIOAny(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: h))), promise: nil)
                        context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "partial")))), promise: nil)
                        context.close(promise: nil)
                    case .ok, .status, .statusEvery:
                        var status = HTTPResponseStatus.ok
                        if case .status(let s) = mode { status = .init(statusCode: s) }
                        if case .statusEvery(let s, let every) = mode, n % every == 0 { status = .init(statusCode: s) }
                        var h = HTTPHeaders()
                        h.add(name: "content-length", value: "27")
                        context.write(NIOAny(HTTPServerResponsePart.head(.init(version: .http1_1, status: status, headers: h))), promise: nil)
                        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "{\"status\":\"ok\",\"qty\":10000}")))), promise: nil)
                        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
                    }
                }
                if let d = server.delays.withLockedValue({ $0[n] }) ?? (server.everyDelay > .zero ? server.everyDelay : nil) {
                    context.eventLoop.assumeIsolated().scheduleTask(in: d) { answer() }
                } else {
                    answer()
                }
            }
        }
    }
}
