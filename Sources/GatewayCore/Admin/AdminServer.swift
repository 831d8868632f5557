import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Envoy-style admin endpoints on their own port (127.0.0.1 by default). Off the request path,
/// so it uses NIOHTTP1 and Strings freely.
enum AdminServer {
    static func bind(runtime: GatewayRuntime, address: BindAddress) async throws -> Channel {
        try await ServerBootstrap(group: runtime.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(runtime: runtime))
                }
            }
            .bind(host: address.address, port: address.port).get()
    }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let runtime: GatewayRuntime
    private var head: HTTPRequestHead?

    init(runtime: GatewayRuntime) { self.runtime = runtime }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            self.head = nil
            let (status, contentType, body) = respond(head)
            var headers = HTTPHeaders()
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: String(body.utf8.count))
            let keepAlive = head.isKeepAlive
            if !keepAlive { headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !keepAlive {
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                done.whenComplete { _ in ctx.value.close(promise: nil) }
            }
        }
    }

    private func respond(_ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String) {
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = parts.first.map(String.init) ?? "/"
        let query = parts.count > 1 ? String(parts[1]) : ""
        let json = query.split(separator: "&").contains("format=json")
        let view = AdminView(runtime: runtime)
        switch (head.method, path) {
        case (.GET, "/stats"):
            return json ? (.ok, "application/json", view.statsJSON()) : (.ok, "text/plain", view.statsText())
        case (.GET, "/stats/prometheus"):
            return (.ok, "text/plain; version=0.0.4", view.prometheus())
        case (.GET, "/clusters"):
            return json ? (.ok, "application/json", view.clustersJSON()) : (.ok, "text/plain", view.clustersText())
        case (.GET, "/config_dump"):
            return (.ok, "application/json", view.configDump())
        case (.GET, "/ready"):
            return runtime.isDraining ? (.serviceUnavailable, "text/plain", "DRAINING\n") : (.ok, "text/plain", "LIVE\n")
        case (.POST, "/reload"):
            switch runtime.reload() {
            case .success(let version):
                return (.ok, "application/json", "{\"version\":\(version)}\n")
            case .failure(let error):
                return (.badRequest, "application/json", "{\"error\":\(jsonString(error.description))}\n")
            }
        case (.GET, "/"):
            return (.ok, "text/plain", """
                admin commands are:
                  /stats              counters and gauges (?format=json)
                  /stats/prometheus   the same in Prometheus text format
                  /clusters           endpoints, health and circuit-breaker limits (?format=json)
                  /config_dump        the config in force, its version, the last reload error
                  /ready              200 once listening, 503 while draining
                  POST /reload        re-read the config file

                """)
        case (_, "/reload"):
            return (.methodNotAllowed, "text/plain", "use POST /reload\n")
        default:
            return (.notFound, "text/plain", "unknown admin path \(path); GET / lists them\n")
        }
    }
}

func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}
