import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// What a peer answered.
public struct PeerResponse: Sendable {
    public var status: Int
    public var body: [UInt8]
    public var json: Any? { try? JSONSerialization.jsonObject(with: Data(body)) }
}

public struct PeerError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// A small HTTP/1.1 client for service-to-service calls and event feeds: one connection per
/// call (loopback connects are cheap), a hard deadline, no body streaming.
public enum PeerClient {
    public static func send(
        _ method: HTTPMethod, _ base: String, _ path: String, json: Any? = nil, timeout: TimeAmount = .seconds(5),
        headers extra: [(String, String)] = []
    ) async throws -> PeerResponse {
        guard let url = URL(string: base), let host = url.host else { throw PeerError(description: "bad peer URL \(base)") }
        let port = url.port ?? 80
        var body: ByteBuffer? = nil
        if let json { body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)) }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: PeerResponse.self)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHTTPClientHandlers()
                        try ch.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw PeerError(description: "cannot connect to \(base): \(error)")
        }
        var headers = HTTPHeaders()
        headers.add(name: "host", value: "\(host):\(port)")
        headers.add(name: "connection", value: "close")
        for (k, v) in extra { headers.add(name: k, value: v) }
        if let body {
            headers.add(name: "content-type", value: "application/json")
            headers.add(name: "content-length", value: String(body.readableBytes))
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(PeerError(description: "\(method) \(base)\(path) timed out"))
            channel.close(promise: nil)
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    final class ResponseCollector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<PeerResponse>
        var status = 0
        var body: [UInt8] = []
        init(promise: EventLoopPromise<PeerResponse>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): status = Int(h.status.code)
            case .body(let b): body += b.readableBytesView
            case .end: promise.succeed(PeerResponse(status: status, body: body))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(PeerError(description: "connection closed before a complete response"))
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
    }
}
