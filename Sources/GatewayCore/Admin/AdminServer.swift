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

    /// No admin endpoint takes a body worth more: a larger one is refused (413), not buffered.
    static let maxBodyBytes = 64 * 1024
    /// After a 413 the rest of the body is read and dropped (closing at once would reset the
    /// connection before the client reads the answer), for at most this long.
    static let discardTimeout = TimeAmount.seconds(2)

    let runtime: GatewayRuntime
    private var head: HTTPRequestHead?
    private var bodyBytes = 0
    /// The request was answered early (413): its remaining parts are dropped, then the
    /// connection closes once that answer is written.
    private var discarding: EventLoopFuture<Void>?

    init(runtime: GatewayRuntime) { self.runtime = runtime }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            bodyBytes = 0
            if let declared = h.headers.first(name: "content-length").flatMap(Int.init), declared > Self.maxBodyBytes {
                refuseBody(context, h)
            }
        case .body(let part):
            guard discarding == nil, let head else { return }
            bodyBytes += part.readableBytes
            if bodyBytes > Self.maxBodyBytes { refuseBody(context, head) }
        case .end:
            if let answered = discarding {
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                answered.whenComplete { _ in ctx.value.close(promise: nil) }
                return
            }
            guard let head else { return }
            self.head = nil
            if head.method == .POST, Self.path(of: head) == "/reload", Self.browserRequestReason(head.headers) == nil {
                reload(context, head)
                return
            }
            if head.method == .GET, Self.renderedOffLoop.contains(Self.path(of: head)) {
                renderOffLoop(context, head)
                return
            }
            let (status, contentType, body, extra) = respond(head, local: context.channel.localAddress)
            send(context, head, status, contentType, body, extraHeaders: extra, close: !head.isKeepAlive)
        }
    }

    /// Reading and compiling a config (up to 16 MiB) runs on a thread of its own, not on this
    /// event loop, which also carries client traffic; the answer is written back here. NIOHTTP1's
    /// pipelining handler holds any next request on the connection until then.
    private func reload(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let runtime = self.runtime
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { runtime.reload() }
            .assumeIsolated()
            .whenComplete { outcome in
                let answer: (HTTPResponseStatus, String)
                switch outcome {
                case .success(.success(let version)):
                    answer = (.ok, "{\"version\":\(version)}\n")
                case .success(.failure(let error)):
                    answer = (.badRequest, "{\"error\":\(jsonString(error.description))}\n")
                case .failure(let error):
                    answer = (.serviceUnavailable, "{\"error\":\(jsonString("reload not run: \(error)"))}\n")
                }
                self.send(context, head, answer.0, "application/json", answer.1, close: !head.isKeepAlive)
            }
    }

    /// What walks every cluster, endpoint and histogram bin: a few ms for a large config, and an
    /// open dashboard reads `/stats` and `/clusters` every second. Rendered on a thread of its
    /// own, as reload is, so requests on this event loop never wait behind it.
    static let renderedOffLoop: Set<String> = ["/stats", "/stats/prometheus", "/clusters", "/config_dump"]

    private func renderOffLoop(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let runtime = self.runtime
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { Self.respond(runtime, head) }
            .assumeIsolated()
            .whenComplete { outcome in
                switch outcome {
                case .success(let (status, contentType, body)):
                    self.send(context, head, status, contentType, body, close: !head.isKeepAlive)
                case .failure(let error):
                    self.send(context, head, .serviceUnavailable, "text/plain", "not rendered: \(error)\n", close: true)
                }
            }
    }

    static func path(of head: HTTPRequestHead) -> String {
        head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
    }

    private func refuseBody(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        self.head = nil
        discarding = send(context, head, .payloadTooLarge, "text/plain",
                          "admin request bodies are limited to \(Self.maxBodyBytes / 1024) KiB\n", close: false,
                          connectionClose: true)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: Self.discardTimeout) { ctx.value.close(promise: nil) }
    }

    @discardableResult
    private func send(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ contentType: String,
        _ body: String, extraHeaders: [(String, String)] = [], close: Bool, connectionClose: Bool = false
    ) -> EventLoopFuture<Void> {
        var headers = HTTPHeaders()
        if status != .noContent {
            headers.add(name: "content-type", value: contentType)
            headers.add(name: "content-length", value: String(body.utf8.count))
        }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        if close || connectionClose { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if status != .noContent {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close {
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in ctx.value.close(promise: nil) }
        }
        return done
    }

    /// CORS "simple" content types: what an HTML form, or a script without a preflight, can
    /// send to another origin.
    static let simpleContentTypes: Set<String> = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]

    /// Why a POST looks like one a browser sent for a page of another site, or nil. The admin
    /// port's one page, the dashboard, only reads (GET), so no browser POST to it is legitimate:
    /// browsers mark theirs with Origin (on every POST) and Sec-Fetch-Site, and a form can only
    /// send the simple content types. curl and scripts send none of these.
    static func browserRequestReason(_ headers: HTTPHeaders) -> String? {
        if let origin = headers.first(name: "origin") { return "Origin: \(origin)" }
        if let site = headers.first(name: "sec-fetch-site"), site.lowercased() != "none" { return "Sec-Fetch-Site: \(site)" }
        for value in headers["content-type"] {
            let media = value.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
            let essence = media.trimmingCharacters(in: .whitespaces).lowercased()
            if simpleContentTypes.contains(essence) { return "Content-Type \(essence), which a form on any site can send" }
        }
        return nil
    }

    /// Methods each admin path answers, for OPTIONS and its Allow header.
    static let allowedMethods: [String: String] = [
        "/": "GET, OPTIONS", "/stats": "GET, OPTIONS", "/stats/prometheus": "GET, OPTIONS", "/clusters": "GET, OPTIONS",
        "/config_dump": "GET, OPTIONS", "/ready": "GET, OPTIONS", "/reload": "POST, OPTIONS",
    ]

    private func respond(_ head: HTTPRequestHead, local: SocketAddress?) -> (HTTPResponseStatus, String, String, [(String, String)]) {
        let path = Self.path(of: head)
        if head.method == .OPTIONS, let allow = Self.allowedMethods[path] {
            // Plain HTTP OPTIONS: no Access-Control-Allow-* header, so a browser's preflight fails.
            return (.noContent, "", "", [("allow", allow)])
        }
        if head.method == .POST, path == "/reload", let reason = Self.browserRequestReason(head.headers) {
            let admin = local.map { "\($0.ipAddress ?? "127.0.0.1"):\($0.port ?? 9901)" } ?? "127.0.0.1:9901"
            return (.forbidden, "text/plain", """
                POST /reload refused: it looks like a browser's request from another site (\(reason)).
                Send a POST with no body (or Content-Type: application/json) and no Origin header, \
                e.g. curl -X POST http://\(admin)/reload

                """, [])
        }
        if head.method == .GET, path == "/", Self.wantsHTML(head.headers) {
            return (.ok, "text/html; charset=utf-8", Dashboard.html, Dashboard.headers)
        }
        let (status, contentType, body) = Self.respond(runtime, head)
        return (status, contentType, body, path == "/" ? [("vary", "accept")] : [])
    }

    /// A browser asks for HTML and gets the dashboard; curl and scripts (`Accept: */*` or none)
    /// keep getting the plain list of admin commands.
    static func wantsHTML(_ headers: HTTPHeaders) -> Bool {
        headers["accept"].contains { $0.lowercased().contains("text/html") }
    }

    /// The answer to a GET (or a wrong method) from the runtime alone, so any thread can render it.
    private static func respond(_ runtime: GatewayRuntime, _ head: HTTPRequestHead) -> (HTTPResponseStatus, String, String) {
        let path = Self.path(of: head)
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
        let parameters = query.split(separator: "&")
        let json = parameters.contains("format=json")
        let view = AdminView(runtime: runtime)
        switch (head.method, path) {
        case (.GET, "/stats"):
            guard json else { return (.ok, "text/plain", view.statsText()) }
            // Envoy's histogram_buckets: `detailed` lists every non-empty bin, `none` (the
            // default) the quantiles; Envoy's `cumulative` and `disjoint` are not offered.
            let buckets = parameters.last { $0.hasPrefix("histogram_buckets=") }?.dropFirst("histogram_buckets=".count)
            switch buckets {
            case nil, "none":
                return (.ok, "application/json", view.statsJSON())
            case "detailed":
                return (.ok, "application/json", view.statsJSON(detailedBuckets: true))
            case let other?:
                return (.badRequest, "text/plain", "histogram_buckets=\(other) is not supported; use detailed or none\n")
            }
        case (.GET, "/stats/prometheus"):
            return (.ok, "text/plain; version=0.0.4", view.prometheus())
        case (.GET, "/clusters"):
            return json ? (.ok, "application/json", view.clustersJSON()) : (.ok, "text/plain", view.clustersText())
        case (.GET, "/config_dump"):
            return (.ok, "application/json", view.configDump())
        case (.GET, "/ready"):
            return runtime.isDraining ? (.serviceUnavailable, "text/plain", "DRAINING\n") : (.ok, "text/plain", "LIVE\n")
        case (.GET, "/"):
            return (.ok, "text/plain", """
                admin commands are:
                  /                   this list; in a browser, the live dashboard
                  /stats              counters, gauges and latency histograms (?format=json)
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
