import Foundation
import Instrumentation
import NIOCore
import NIOHTTP1
import NIOPosix
import Tracing

/// What a peer answered.
public struct PeerResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var json: Any? { try? JSONSerialization.jsonObject(with: Data(body)) }
}

public struct PeerError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        /// No connection could be made: the peer never saw the request.
        case connect
        /// The request may have reached the peer (reset, timeout, bad answer).
        case other
    }
    public var kind: Kind = .other
    public var description: String
}

/// A small HTTP/1.1 client for service-to-service calls and event feeds. Connections are kept
/// alive and reused per peer (the order → delivery call is on the hot path); a request that
/// fails on a reused connection before any answer arrives is sent once more on a fresh one
/// (every call made through it is idempotent: POST /deliveries is idempotent per orderId).
///
/// A call made while a request runs is a client span of that request's trace, and carries it on
/// in `traceparent` (so delivery logs the trace id order logged for the same order); calls made
/// outside any request (event feeds, reconciliation) carry none.
public enum PeerClient {
    public static func send(
        _ method: HTTPMethod, _ base: String, _ path: String, json: Any? = nil, timeout: TimeAmount = .seconds(5),
        headers extra: [(String, String)] = []
    ) async throws -> PeerResponse {
        guard InstrumentationContext.current?.w3cTrace != nil else {
            return try await exchange(method, base, path, json: json, timeout: timeout, headers: extra)
        }
        let route = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        return try await withSpan("\(method) \(route)", ofKind: .client) { span in
            span.attributes["http.request.method"] = "\(method)"
            span.attributes["server.address"] = base
            span.attributes["url.path"] = route
            var headers = HTTPHeaders()
            InstrumentationSystem.instrument.inject(span.context, into: &headers, using: HTTPHeadersInjector())
            let response = try await exchange(method, base, path, json: json, timeout: timeout,
                                              headers: extra + headers.map { ($0.name, $0.value) })
            span.attributes["http.response.status_code"] = response.status
            return response
        }
    }

    private static func exchange(
        _ method: HTTPMethod, _ base: String, _ path: String, json: Any?, timeout: TimeAmount, headers extra: [(String, String)]
    ) async throws -> PeerResponse {
        guard let url = URL(string: base), let host = url.host else { throw PeerError(description: "bad peer URL \(base)") }
        let port = url.port ?? 80
        var body: ByteBuffer? = nil
        if let json { body = ByteBuffer(string: JSONText.encode(json)) }
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        for (k, v) in extra { headers.add(name: k, value: v) }
        if method != .GET || body != nil {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body?.readableBytes ?? 0))
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        let key = "\(host):\(port)"
        var retried = false
        if let reused = ConnectionPool.shared.take(key) {
            do {
                return try await reused.exchange(head, body, timeout: timeout, pool: key)
            } catch is StaleConnection {
                retried = true  // closed before any answer (idle close, or the peer died): once more on a fresh one
            }
        }
        let conn: PooledConnection
        do {
            conn = try await PooledConnection.connect(host: host, port: port, timeout: timeout)
        } catch {
            // After a failed first try the peer may have seen the request: not a clean refusal.
            throw PeerError(kind: retried ? .other : .connect, description: "cannot connect to \(base): \(error)")
        }
        do {
            return try await conn.exchange(head, body, timeout: timeout, pool: key)
        } catch is StaleConnection {
            throw PeerError(description: "\(method) \(base)\(path): connection closed before a complete response")
        }
    }
}

struct StaleConnection: Error {}

struct HTTPHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into headers: inout HTTPHeaders) {
        headers.replaceOrAdd(name: key, value: value)
    }
}

/// Idle keep-alive connections per peer.
final class ConnectionPool: @unchecked Sendable {
    static let shared = ConnectionPool()
    private let lock = NSLock()
    private var idle: [String: [PooledConnection]] = [:]
    private let maxIdlePerPeer = 64

    func take(_ key: String) -> PooledConnection? {
        lock.lock()
        defer { lock.unlock() }
        while let c = idle[key]?.popLast() {
            if c.channel.isActive { return c }
        }
        return nil
    }

    func put(_ key: String, _ c: PooledConnection) {
        lock.lock()
        var list = idle[key, default: []]
        let keep = list.count < maxIdlePerPeer
        if keep {
            list.append(c)
            idle[key] = list
        }
        lock.unlock()
        if !keep { c.channel.close(promise: nil) }
    }
}

final class PooledConnection: @unchecked Sendable {
    let channel: Channel
    let handler: ResponseCollector

    init(channel: Channel, handler: ResponseCollector) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(host: String, port: Int, timeout: TimeAmount) async throws -> PooledConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHTTPClientHandlers()
                    try ch.pipeline.syncOperations.addHandler(ResponseCollector())
                }
            }
            .connect(host: host, port: port).get()
        let handler = try await channel.pipeline.handler(type: ResponseCollector.self).get()
        return PooledConnection(channel: channel, handler: handler)
    }

    /// One request/response; back to the pool when both sides keep the connection alive.
    func exchange(_ head: HTTPRequestHead, _ body: ByteBuffer?, timeout: TimeAmount, pool key: String) async throws -> PeerResponse {
        let channel = self.channel
        let handler = self.handler
        let promise = channel.eventLoop.makePromise(of: PeerResponse.self)
        channel.eventLoop.execute {
            handler.begin(promise)
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(PeerError(description: "\(head.method) \(head.uri) timed out after \(timeout.nanoseconds / 1_000_000) ms"))
            channel.close(promise: nil)
        }
        do {
            let response = try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(CancellationError())
                channel.close(promise: nil)
            }
            timer.cancel()
            let keepAlive = !response.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            if keepAlive && channel.isActive {
                ConnectionPool.shared.put(key, self)
            } else {
                channel.close(promise: nil)
            }
            return response
        } catch {
            timer.cancel()
            channel.close(promise: nil)
            throw error
        }
    }

    /// Collects one response at a time; confined to the channel's event loop.
    final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        private var promise: EventLoopPromise<PeerResponse>?
        private var status = 0
        private var headers = HTTPHeaders()
        private var body: [UInt8] = []
        private var sawBytes = false

        func begin(_ p: EventLoopPromise<PeerResponse>) {
            promise = p
            status = 0
            headers = HTTPHeaders()
            body = []
            sawBytes = false
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            sawBytes = true
            switch unwrapInboundIn(data) {
            case .head(let h):
                status = Int(h.status.code)
                headers = h.headers
            case .body(let b): body += b.readableBytesView
            case .end:
                let p = promise
                promise = nil
                p?.succeed(PeerResponse(status: status, headers: headers, body: body))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            let p = promise
            promise = nil
            if sawBytes {
                p?.fail(PeerError(description: "connection closed before a complete response"))
            } else {
                p?.fail(StaleConnection())
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            let p = promise
            promise = nil
            p?.fail(sawBytes ? error : StaleConnection())
            context.close(promise: nil)
        }
    }
}
