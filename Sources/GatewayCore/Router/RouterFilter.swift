import HTTP1Wire
import NIOCore
import TraceWire

/// One downstream request on its way through the route's policies to an upstream and back
/// (Envoy's router filter, `source/common/router/router.cc`). Its steps, in order:
/// `route` (match, rate limit, destination) → `begin` (route timer, fault) → `tryOnce` (pick a
/// host, one `UpstreamRequest`) → `upstreamHead`/`upstreamTryFailed` (retry decision by
/// `RetryState`) → relay the response to the `DownstreamStream` → `finish` (access log).
/// A try's pool wait, per-try timer and host accounting live in `UpstreamRequest`; how the
/// answer is encoded for the client lives in the stream. Confined to the downstream's event loop.
final class RouterFilter: UpstreamRequestOwner, RetryTarget {
    /// Request bodies up to this size are kept so a retry can send them again.
    static let maxReplayBytes = 1 << 20

    private let stream: DownstreamStream
    let worker: Worker
    let route: Route
    let cluster: ClusterSnapshot
    private let pool: ClusterPool
    private let head: MessageHead
    private let headBytes: ByteBuffer
    /// The head every try sends: built once, so the request id is the same on every try.
    private let upstreamHead: ByteBuffer
    private let requestID: ByteBuffer
    /// The request's trace context: decided once, so every try and mirrored copy carries it.
    private let trace: RequestTrace
    /// The body kept for a retry (while `replayable`) or until the first try has a connection.
    private var body: ByteBuffer?
    private var replayable = true
    private var bytesReceived = 0
    private var retry: RetryState
    private var flags: ResponseFlags = []
    private let start: NIODeadline
    private var upstreamRequest: UpstreamRequest?
    private var lastHost: Host?
    private var responseStarted = false
    private var status = 0
    private var upstreamServiceMs: Int?
    private var routeTimer: Scheduled<Void>?
    private var faultDelayTimer: Scheduled<Void>?
    private var done = false
    /// The route mirrors and the request reached the router: its copies go once its body is whole.
    private var mirrorArmed = false
    /// The request's consistent-hash key (only computed when the cluster hashes).
    private let hash: UInt64?
    /// The route's `headers.response` and CORS lines for this request; nil on routes without transforms.
    private let responseEdit: ResponseHeadEdit?
    /// A WebSocket upgrade: the upstream is asked to switch, and a 101 turns the request into a tunnel.
    private let upgrade: Bool
    /// A gRPC call (only HTTP/2 streams carry them): its timeout may come from `grpc-timeout`, a
    /// trailers-only `grpc-status` may be retried, and its status is counted for the cluster.
    private let grpc: Bool
    /// A HEAD request, whose response has no body. Decided once: reading `head` from this object
    /// copies all of it.
    private let isHeadRequest: Bool

    // MARK: route

    /// Matches the request to a route and applies the policies that need no upstream (rate
    /// limit, a destination to send to). Answers locally and returns nil when one refuses it;
    /// else the filter to attach to the stream and `begin`.
    static func route(stream: DownstreamStream, worker: Worker, head: MessageHead, headBytes: ByteBuffer,
                      earlyBody: ByteBuffer?) -> RouterFilter? {
        worker.eventLoop.assertInEventLoop()
        let now = NIODeadline.now()
        // The snapshot is shared by every event loop: read once, so its reference count (a cache
        // line the other loops write too) is touched once per request, not once per use.
        let table = worker.snapshot.routes
        // Asked only when some route matches on `port`: the plain path looks nothing up.
        let localPort = table.usesLocalPort ? stream.localPort : 0
        let secure = table.usesScheme && stream.isSecure
        let route = headBytes.withUnsafeReadableBytes { table.match(head, $0, localPort: localPort, secure: secure) }
        let received = earlyBody?.readableBytes ?? 0
        guard let route else {
            worker.listenerStats.inc(.noRoute, row: worker.row)
            replyWithoutUpstream(stream, worker, head, headBytes, start: now, received: received, status: 404,
                                 body: "route not found", flags: .noRoute)
            return nil
        }
        // The CORS filter comes first (Envoy's order in Istio's chain): a preflight it answers
        // takes no rate-limit token and reaches no upstream.
        var corsOrigin: String? = nil
        if let cors = route.transforms?.cors {
            switch corsStep(cors, head, headBytes) {
            case .notCORS: break
            case .allowed(let origin): corsOrigin = origin
            case .preflight(let headers):
                replyWithoutUpstream(stream, worker, head, headBytes, start: now, received: received, status: 200, body: "",
                                     flags: [], headers: headers, route: route, rawBody: [])
                return nil
            }
        }
        let localEdit = route.transforms?.responseEdit(destination: nil, corsOrigin: corsOrigin)
        if let limiter = route.rateLimiter {
            let d = limiter.check(client: limiter.config.perClient ? stream.clientAddress : nil, now: now)
            guard d.allowed else {
                route.stats.rateLimited.wrappingIncrement(ordering: .relaxed)
                let reset = String(d.resetSeconds)
                replyWithoutUpstream(
                    stream, worker, head, headBytes, start: now, received: received, status: 429,
                    body: "local_rate_limited", flags: .rateLimited,
                    headers: [
                        ("retry-after", reset), ("ratelimit-limit", String(limiter.config.maxTokens)),
                        ("ratelimit-remaining", "0"), ("ratelimit-reset", reset),
                    ], route: route, edit: localEdit)
                return nil
            }
            route.stats.rateLimitOK.wrappingIncrement(ordering: .relaxed)
        }
        if let t = route.transforms, t.redirect != nil || t.directResponse != nil {
            answerLocally(t, stream, worker, head, headBytes, start: now, received: received, route: route, edit: localEdit)
            return nil
        }
        guard let destination = route.pickDestinationIndex(&worker.random) else {
            replyWithoutUpstream(stream, worker, head, headBytes, start: now, received: received, status: 503,
                                 body: "no healthy upstream", flags: .noHealthyUpstream, route: route, edit: localEdit)
            return nil
        }
        return RouterFilter(stream: stream, worker: worker, route: route, destination: destination, head: head,
                            headBytes: headBytes, body: earlyBody, start: now, corsOrigin: corsOrigin, localPort: localPort)
    }

    private init(stream: DownstreamStream, worker: Worker, route: Route, destination: Int, head: MessageHead,
                 headBytes: ByteBuffer, body: ByteBuffer?, start: NIODeadline, corsOrigin: String?, localPort: Int) {
        let cluster = route.destinations[destination].cluster
        self.stream = stream
        self.worker = worker
        self.route = route
        self.cluster = cluster
        pool = worker.pool(for: cluster)
        self.head = head
        self.headBytes = headBytes
        self.start = start
        retry = RetryState(policy: route.retries, resources: cluster.resources,
                           stats: cluster.stats, row: worker.row)
        if let balancer = cluster.hashBalancer {
            hash = Self.hashKey(balancer.policy, stream: stream, head: head, headBytes: headBytes)
        } else {
            hash = nil
        }
        self.body = body
        bytesReceived = body?.readableBytes ?? 0
        if bytesReceived > Self.maxReplayBytes { replayable = false }
        // The gateway's lines: forwarding (~60 bytes and the address), traceparent (70), request id (52).
        var out = stream.headBuffer(capacity: head.length + 256)
        let trace = headBytes.withUnsafeReadableBytes {
            RequestTrace.start(head, $0, sampleThreshold: worker.sampleThreshold, random: &worker.random)
        }
        self.trace = trace
        if let t = route.transforms {
            responseEdit = t.responseEdit(destination: destination, corsOrigin: corsOrigin)
        } else {
            responseEdit = nil
        }
        if let t = route.transforms, t.rewritesRequest {
            let target = headBytes.withUnsafeReadableBytes { b in
                t.rewrittenTarget(head, b) { route.matchedPathLength(head, b, localPort: localPort, secure: stream.isSecure) }
            }
            requestID = HeadWriter.writeTransformedUpstreamHead(
                head, from: headBytes, clientAddress: stream.clientAddress, secure: stream.isSecure, defaultHost: cluster.serviceHost,
                target: target, authority: t.authorities[destination], edit: t.requestEdits[destination], trace: trace,
                into: &out
            ) { worker.writeRequestID(into: &$0) }
        } else {
            requestID = HeadWriter.writeUpstreamHead(
                head, from: headBytes, clientAddress: stream.clientAddress, secure: stream.isSecure,
                defaultHost: cluster.serviceHost, trace: trace, into: &out
            ) { worker.writeRequestID(into: &$0) }
        }
        upgrade = head.upgrade != nil && headBytes.withUnsafeReadableBytes { head.isWebSocketUpgrade($0) }
        grpc = stream.isGRPC
        // Methods are case-sensitive (RFC 9110 §9.1): only `HEAD` has a response without a body.
        isHeadRequest = head.method.count == 4 && headBytes.withUnsafeReadableBytes { equalsExactly($0, head.method, "HEAD") }
        if upgrade { HeadWriter.appendWebSocketUpgrade(to: &out) }
        upstreamHead = out
    }

    // MARK: route transforms

    private enum CORSStep {
        case notCORS
        case allowed(origin: String)
        /// A preflight the gateway answers, with these headers.
        case preflight([(String, String)])
    }

    /// Envoy's CORS filter on the request: a request with an `Origin` the policy allows gets the
    /// CORS lines on its response; a preflight (OPTIONS with Origin and
    /// Access-Control-Request-Method) is answered here when its origin is allowed, or when it is
    /// not and unmatched preflights are not forwarded (then without Access-Control-Allow-Origin).
    private static func corsStep(_ cors: CompiledCORS, _ head: MessageHead, _ headBytes: ByteBuffer) -> CORSStep {
        headBytes.withUnsafeReadableBytes { b in
            guard let origin = head.value(of: "origin", in: b), !origin.isEmpty else { return .notCORS }
            let allowed = cors.allows(origin)
            if equalsExactly(b, head.method, "OPTIONS"), let requested = head.value(of: "access-control-request-method", in: b),
               !requested.isEmpty, allowed || !cors.forwardNotMatchingPreflights
            {
                return .preflight(cors.preflightHeaders(
                    origin: allowed ? origin : nil, requestMethod: requested,
                    requestHeaders: head.value(of: "access-control-request-headers", in: b)))
            }
            return allowed ? .allowed(origin: origin) : .notCORS
        }
    }

    /// `redirect` and `directResponse`: the gateway's own answer, with the route's response
    /// headers and CORS lines.
    private static func answerLocally(
        _ t: CompiledTransforms, _ stream: DownstreamStream, _ worker: Worker, _ head: MessageHead, _ headBytes: ByteBuffer,
        start: NIODeadline, received: Int, route: Route, edit: ResponseHeadEdit?
    ) {
        if let redirect = t.redirect {
            let localPort = stream.localPort
            let location = headBytes.withUnsafeReadableBytes { redirect.location(head, $0, localPort: localPort, secure: stream.isSecure) }
            guard let location else {
                replyWithoutUpstream(stream, worker, head, headBytes, start: start, received: received, status: 400,
                                     body: "a redirect needs the request's Host header", flags: [], route: route, edit: edit)
                return
            }
            replyWithoutUpstream(stream, worker, head, headBytes, start: start, received: received,
                                 status: redirect.config.redirectCode, body: "", flags: [], headers: [("location", location)],
                                 route: route, edit: edit, rawBody: [])
            return
        }
        let direct = t.directResponse!
        replyWithoutUpstream(stream, worker, head, headBytes, start: start, received: received, status: direct.status,
                             body: "", flags: [], route: route, edit: edit, rawBody: direct.body ?? [])
    }

    // MARK: begin

    /// Starts the route timer and the fault filter, then the first try.
    func begin() {
        if let timeout = grpc ? grpcTimeout() : route.timeout {
            routeTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) { self.routeTimedOut() }
        }
        guard route.hasFault else {
            forward()
            return
        }
        let fault = FaultDecision.decide(route.config.fault, random: &worker.random)
        if let delay = fault.delay {
            flags.insert(.delayInjected)
            route.stats.faultDelays.wrappingIncrement(ordering: .relaxed)
            faultDelayTimer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) {
                self.faultDelayTimer = nil
                self.afterFaultDelay(fault)
            }
            return
        }
        afterFaultDelay(fault)
    }

    /// A gRPC call's timeout as Istio programs Envoy (`max_grpc_timeout` set to the route's
    /// timeout, or to infinity without one): the call's `grpc-timeout`, capped by the route's
    /// timeout; without the header, the route's. When it passes the call ends as any route
    /// timeout does (504, `UT`), which its client reads as UNAVAILABLE.
    private func grpcTimeout() -> TimeAmount? {
        let header = headBytes.withUnsafeReadableBytes { head.value(of: "grpc-timeout", in: $0) }.flatMap(GRPC.timeout)
        guard let header else { return route.timeout }
        guard let cap = route.timeout else { return header }
        return min(header, cap)
    }

    private func afterFaultDelay(_ fault: FaultDecision) {
        guard !done else { return }
        if let status = fault.abortStatus {
            flags.insert(.faultInjected)
            route.stats.faultAborts.wrappingIncrement(ordering: .relaxed)
            // An abort's gRPC status goes to a gRPC call; any other request gets the plain 200.
            let headers = grpc ? fault.abortGRPCStatus.map { [("grpc-status", String($0))] } ?? [] : []
            finishLocally(status: status, body: "fault filter abort", headers: headers)
            return
        }
        forward()
    }

    /// The request passed the filters before the router: the first try, then the shadows (if the
    /// route mirrors). The main request asks the pool first, as Envoy starts its upstream request
    /// before its shadows: a shadow to the same cluster must not take the connection or the
    /// queue place the request needs. A request answered at once (no healthy host) is not shadowed.
    private func forward() {
        tryOnce()
        // A WebSocket is not mirrored (a shadow could not switch protocols with it).
        if route.hasMirrors && !done && !upgrade {
            mirrorArmed = true
            mirrorIfComplete()
        }
    }

    // MARK: mirror

    /// Envoy shadows a request once it is whole, and only when the router kept its whole body.
    private func mirrorIfComplete() {
        guard mirrorArmed, stream.requestComplete else { return }
        mirrorArmed = false
        guard replayable else {
            cluster.stats.inc(.retry_or_shadow_abandoned, row: worker.row)
            route.stats.mirrorDropped.wrappingIncrement(ordering: .relaxed)
            return
        }
        ShadowRequest.mirror(route: route, head: upstreamHead, body: body, requestIsHead: isHeadRequest, worker: worker)
    }

    // MARK: one try

    private func tryOnce() {
        guard !done else { return }
        // retryIgnorePreviousHosts: false lets a retry land on the host that just failed.
        let exclude = retry.policy.ignorePreviousHosts ? lastHost : nil
        guard let host = pool.pickHost(policy: cluster.policy.loadBalancer, exclude: exclude, hash: hash,
                                       random: &worker.random)
        else {
            cluster.stats.inc(.upstream_cx_none_healthy, row: worker.row)
            flags.insert(.noHealthyUpstream)
            finishLocally(status: 503, body: "no healthy upstream")
            return
        }
        lastHost = host
        let http2 = cluster.upstreamHTTP2(clientIsHTTP2: stream.isHTTP2, upgrade: upgrade)
        let request = UpstreamRequest(
            owner: self, hostPool: pool.pool(for: host, http2: http2), cluster: cluster, eventLoop: worker.eventLoop, row: worker.row,
            perTryTimeout: route.perTryTimeout, requestIsHead: isHeadRequest, upgrade: upgrade)
        upstreamRequest = request
        request.start(head: upstreamHead, requestComplete: stream.requestComplete)
    }

    /// The hash policy's key for this request. A cookie policy with a `ttl` whose cookie is
    /// missing makes one, as Envoy's router does: its value is the hex xxHash64 of the
    /// connection's addresses (so every request of the connection gets the same one), the
    /// hash is that of the value, and the response carries it in `Set-Cookie`.
    private static func hashKey(_ policy: HashPolicy, stream: DownstreamStream, head: MessageHead,
                                headBytes: ByteBuffer) -> UInt64? {
        if let h = headBytes.withUnsafeReadableBytes({ policy.hash(head, $0, clientAddress: stream.clientAddress) }) {
            return h
        }
        guard let cookie = policy.cookieToGenerate else { return nil }
        let value = XXHash64.hex(XXHash64.hash(stream.connectionAddresses))
        stream.addResponseHeader(name: "set-cookie", value: "\(cookie.name)=\"\(value)\"\(cookie.attributes)")
        return XXHash64.hash(value)
    }

    func upstreamReady(_ request: UpstreamRequest) {
        route.stats.inc(.upstream_rq_total, row: worker.row)
        // Reads paused for an earlier try, or while waiting for this connection, go on: this
        // connection reports its own watermarks.
        stream.resumeReading()
        if let body, body.readableBytes > 0 { request.sendBody(body) }
        if !replayable { body = nil }
    }

    // MARK: retry decision

    /// Asks the retry state; on `.yes` the next try starts after its backoff.
    /// `grpcStatus`: the `grpc-status` of a trailers-only answer, for the gRPC `retryOn` conditions.
    private func scheduleRetry(_ result: TryResult, grpcStatus: Int? = nil) -> Bool {
        let status = retry.shouldRetry(result, grpcStatus: grpcStatus, replayable: replayable, eventLoop: worker.eventLoop,
                                       random: &worker.random, target: self)
        switch status {
        case .yes:
            route.stats.inc(.upstream_rq_retry, row: worker.row)
            return true
        case .noRetryLimitExceeded:
            flags.insert(.retryLimitExceeded)
            return false
        case .no, .noOverflow:
            return false
        }
    }

    /// The backoff of a scheduled retry is over.
    func retryNow() {
        retry.backoffFired()
        tryOnce()
    }

    // MARK: upstream response

    func upstreamInterimHead(_ bytes: ByteBuffer) {
        guard !done else { return }
        stream.encodeInterimHead(bytes)  // 100 Continue and friends pass through
    }

    func upstreamHead(_ request: UpstreamRequest, _ response: MessageHead, bytes: ByteBuffer, framing: BodyFraming,
                      serviceMs: Int) -> Bool {
        guard !done else { return false }
        route.stats.countResponse(response.status, row: worker.row)
        // Envoy reads `grpc-status` from the response head (a trailers-only answer) when retryOn
        // has a gRPC condition; only a gRPC call's head is looked at.
        var grpcStatus: Int? = nil
        if grpc && retry.policy.retryOn.hasGRPCConditions {
            grpcStatus = bytes.withUnsafeReadableBytes { GRPC.status(response, $0) }
        }
        if scheduleRetry(.response(status: response.status), grpcStatus: grpcStatus) {
            upstreamRequest = nil
            return false
        }
        responseStarted = true
        status = response.status
        upstreamServiceMs = serviceMs
        if let responseEdit {
            stream.encodeHead(response, bytes: bytes, framing: framing, upstreamServiceMs: serviceMs, edit: responseEdit)
        } else {
            stream.encodeHead(response, bytes: bytes, framing: framing, upstreamServiceMs: serviceMs)
        }
        return true
    }

    func upstreamBody(_ part: ByteBuffer) {
        guard !done else { return }
        stream.encodeBody(part)
    }

    /// The upstream read batch is over: what it brought goes to the client now.
    func upstreamReadComplete() {
        guard !done else { return }
        stream.flushResponse()
        // The client may have fallen behind before this request began (no transition to see).
        if !stream.isWritable { upstreamRequest?.pauseReading() }
    }

    func upstreamResponseEnd(_ request: UpstreamRequest) {
        guard !done else { return }
        upstreamRequest = nil
        route.stats.inc(.upstream_rq_completed, row: worker.row)
        route.stats.upstreamRqTime.record(micros: request.responseTimeMicros, row: worker.row)
        finish(reset: false, end: request.responseEndedAt)
    }

    // MARK: WebSocket

    /// The upstream accepted the upgrade: the client gets the 101, and the two connections become
    /// a tunnel until either closes. The route timeout bounded the handshake; from here only the
    /// stream idle timeout applies, as for Envoy's upgraded streams.
    func upstreamSwitchedProtocols(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, rest: ByteBuffer?,
                                   connection: UpstreamConnection) {
        guard !done else {
            connection.close()
            return
        }
        assert(upgrade, "a 101 only answers an upgrade request")
        upstreamRequest = nil
        routeTimer?.cancel()
        routeTimer = nil
        route.stats.countResponse(101, row: worker.row)
        responseStarted = true
        status = 101
        stream.encodeSwitchingProtocols(head, bytes: bytes)
        let tunnel = UpgradeTunnel(client: stream.tunnelEnd, upstream: connection, eventLoop: worker.eventLoop) {
            [self] fromClient, _ in
            // The tunnel's bytes from the client count as the request's; those to it are in the
            // stream's count already.
            bytesReceived += fromClient
            finish(reset: true)
        }
        connection.startTunnel(tunnel)
        stream.startTunnel(tunnel)
        if let rest { tunnel.received(rest, from: connection) }
        tunnel.readComplete(from: connection)
        tunnel.readComplete(from: stream.tunnelEnd)
    }

    func upstreamTryFailed(_ request: UpstreamRequest, _ result: TryResult, reason: String) {
        guard !done else { return }
        upstreamRequest = nil
        if responseStarted {
            // Part of the answer is already with the client: all we can do is cut it off.
            flags.insert(result == .protocolError ? .upstreamProtocolError : .upstreamTermination)
            finish(reset: true)
            return
        }
        let connectError = "upstream connect error or disconnect/reset before headers. reset reason: "
        switch result {
        case .overflow:
            _ = scheduleRetry(result)  // never retried; counts an earlier retry's success
            flags.insert(.upstreamOverflow)
            finishLocally(status: 503, body: connectError + "overflow",
                          headers: [("x-envoy-overloaded", "true"), ("retry-after", "1")])
        case .connectFailure:
            if scheduleRetry(result) { return }
            flags.insert(.upstreamConnectFailure)
            finishLocally(status: 503, body: connectError + "connection failure")
        case .reset, .response:
            if scheduleRetry(result) { return }
            flags.insert(.upstreamTermination)
            finishLocally(status: 503, body: connectError + "connection termination")
        case .refusedStream:
            if scheduleRetry(result) { return }
            flags.insert(.upstreamTermination)
            finishLocally(status: 503, body: connectError + "remote refused stream reset")
        case .timeout:
            if scheduleRetry(result) { return }
            flags.insert(.upstreamTimeout)
            finishLocally(status: 504, body: "upstream request timeout")
        case .protocolError:
            // Never retried (a retry would most likely meet the same upstream bug): 502, flag UPE.
            _ = scheduleRetry(result)
            flags.insert(.upstreamProtocolError)
            finishLocally(status: 502, body: "upstream protocol error: \(reason)")
        }
    }

    // MARK: route timeout

    private func routeTimedOut() {
        routeTimer = nil
        guard !done else { return }
        cluster.stats.inc(.upstream_rq_timeout, row: worker.row)
        route.stats.inc(.upstream_rq_timeout, row: worker.row)
        flags.insert(.upstreamTimeout)
        if let request = upstreamRequest {
            upstreamRequest = nil
            request.reset(timedOut: true)
        }
        if responseStarted {
            finish(reset: true)
        } else {
            finishLocally(status: 504, body: "upstream request timeout")
        }
    }

    // MARK: downstream events

    func requestBodyPart(_ part: ByteBuffer) {
        bytesReceived += part.readableBytes
        if let request = upstreamRequest, request.isConnected {
            request.sendBody(part)
            guard replayable else { return }
        }
        if body == nil {
            body = part
        } else {
            body!.writeImmutableBuffer(part)
        }
        if replayable && body!.readableBytes > Self.maxReplayBytes {
            replayable = false
            if upstreamRequest?.isConnected == true { body = nil }
        }
        // Waiting for a connection with more body than a retry would keep: hold the client off
        // until there is somewhere to send it.
        if let body, body.readableBytes > Self.maxReplayBytes, upstreamRequest?.isConnected != true {
            stream.pauseReading()
        }
    }

    func requestBodyEnded() {
        upstreamRequest?.requestBodyEnded()
        if mirrorArmed && !done { mirrorIfComplete() }
    }

    // Flow control (Envoy's watermarks: the side that cannot keep up stops the other's reads).

    func downstreamWritabilityChanged(_ writable: Bool) {
        if writable { upstreamRequest?.resumeReading() } else { upstreamRequest?.pauseReading() }
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        guard !done else { return }
        if writable { stream.resumeReading() } else { stream.pauseReading() }
    }

    func requestMalformed(_ error: HTTPParseError) {
        guard !done else { return }
        flags.insert(.downstreamProtocolError)
        worker.listenerStats.inc(.protocolErrors, row: worker.row)
        resetUpstream()
        if responseStarted {
            finish(reset: true)
        } else {
            finishLocally(status: error.status, body: error.reason)
        }
    }

    /// No bytes either way for the listener's `streamIdleTimeout`: Envoy answers `408` when
    /// nothing of the response was sent yet, else it can only cut the response off.
    func streamIdleTimedOut() {
        guard !done else { return }
        flags.insert(.streamIdleTimeout)
        resetUpstream()
        if responseStarted {
            finish(reset: true)
        } else {
            finishLocally(status: 408, body: "stream timeout", forceClose: true)
        }
    }

    func downstreamClosed() {
        guard !done else { return }
        flags.insert(.downstreamTermination)
        resetUpstream()
        finish(reset: true, downstreamGone: true)
    }

    private func resetUpstream() {
        if let request = upstreamRequest {
            upstreamRequest = nil
            request.reset()
        }
    }

    // MARK: finishing

    private func finishLocally(status: Int, body: String, headers: [(String, String)] = [], forceClose: Bool = false) {
        if let responseEdit {
            stream.encodeLocalReply(status: status, body: Array(body.utf8), headers: headers, edit: responseEdit,
                                    forceClose: forceClose)
        } else {
            stream.encodeLocalReply(status: status, body: body, headers: headers, forceClose: forceClose)
        }
        // A gRPC call was answered 200 with a gRPC error (Envoy counts and logs that 200; the
        // response flag tells what happened).
        self.status = grpc ? 200 : status
        finish(reset: false)
    }

    /// `end`: when the response ended, if the caller read the clock already (one read less per request).
    private func finish(reset: Bool, downstreamGone: Bool = false, end: NIODeadline? = nil) {
        done = true
        routeTimer?.cancel()
        faultDelayTimer?.cancel()
        routeTimer = nil
        faultDelayTimer = nil
        retry.reset()
        resetUpstream()
        worker.listenerStats.countResponse(status, row: worker.row)
        let end = end ?? NIODeadline.now()
        worker.listenerStats.downstreamRqTime.record(from: start.uptimeNanoseconds, to: end.uptimeNanoseconds, row: worker.row)
        // Asked here, not only inside: passing the host to a call retains it, and it is an object
        // every event loop shares.
        if worker.accessLog.isEnabled || worker.spanExporter != nil {
            Self.log(worker, head, headBytes, start: start, end: end, status: status, flags: flags, received: bytesReceived,
                     sent: stream.responseBytesSent, serviceMs: upstreamServiceMs, host: lastHost,
                     requestID: requestID, route: route, stream: stream, trace: trace)
        }
        guard !downstreamGone else { return }
        stream.recycle(upstreamHead)
        stream.endStream(reset: reset)
        // Once the stream has ended: the status of a call may be in the trailers it just sent.
        if grpc, let grpcStatus = stream.grpcStatus { cluster.stats.countGRPC(grpcStatus, row: worker.row) }
    }

    private static func replyWithoutUpstream(
        _ stream: DownstreamStream, _ worker: Worker, _ head: MessageHead, _ headBytes: ByteBuffer, start: NIODeadline,
        received: Int, status: Int, body: String, flags: ResponseFlags, headers: [(String, String)] = [],
        route: Route? = nil, edit: ResponseHeadEdit? = nil, rawBody: [UInt8]? = nil
    ) {
        if edit != nil || rawBody != nil {
            // A HEAD request gets the head alone (RFC 9110 §9.3.2).
            let isHead = headBytes.withUnsafeReadableBytes { equalsExactly($0, head.method, "HEAD") }
            let bytes = rawBody ?? Array(body.utf8)
            stream.encodeLocalReply(status: status, body: isHead ? [] : bytes, headers: headers, edit: edit,
                                    forceClose: false)
        } else {
            stream.encodeLocalReply(status: status, body: body, headers: headers, forceClose: false)
        }
        // A gRPC call gets its error with a 200 (see `finishLocally`).
        let status = stream.isGRPC ? 200 : status
        worker.listenerStats.countResponse(status, row: worker.row)
        let end = NIODeadline.now()
        worker.listenerStats.downstreamRqTime.record(from: start.uptimeNanoseconds, to: end.uptimeNanoseconds, row: worker.row)
        // Answered here, yet still in the client's trace (or a new one) for the log and the
        // exporter; with neither, nothing needs it (a flood of local replies stays as cheap as it was).
        if worker.accessLog.isEnabled || worker.spanExporter != nil {
            let requestID = head.requestID.map { headBytes.getSlice(at: headBytes.readerIndex + $0.lowerBound, length: $0.count)! }
            let trace = headBytes.withUnsafeReadableBytes {
                RequestTrace.start(head, $0, sampleThreshold: worker.sampleThreshold, random: &worker.random)
            }
            log(worker, head, headBytes, start: start, end: end, status: status, flags: flags, received: received,
                sent: stream.responseBytesSent, serviceMs: nil, host: nil, requestID: requestID, route: route, stream: stream,
                trace: trace)
        }
        stream.endStream(reset: false)
    }

    private static func log(
        _ worker: Worker, _ head: MessageHead, _ headBytes: ByteBuffer, start: NIODeadline, end: NIODeadline, status: Int,
        flags: ResponseFlags, received: Int, sent: Int, serviceMs: Int?, host: Host?, requestID: ByteBuffer?,
        route: Route?, stream: DownstreamStream, trace: RequestTrace
    ) {
        if trace.upstream.sampled && worker.spanExporter != nil {
            worker.recordSpan(exportSpan(head, headBytes, start: start, end: end, status: status, flags: flags, host: host?.endpoint,
                                         requestID: requestID, route: route, trace: trace))
        }
        guard worker.accessLog.isEnabled else { return }
        // A named match shows as "<route>.<match>", the name Istio gives the Envoy route.
        let routeName = route.map { r in
            r.hasNamedMatches ? headBytes.withUnsafeReadableBytes { r.logName(head, $0, localPort: stream.localPort, secure: stream.isSecure) } : r.config.name
        }
        let base = headBytes.readerIndex
        worker.accessLog.log(AccessLog.Entry(
            method: headBytes.getSlice(at: base + head.method.lowerBound, length: head.method.count)!,
            path: headBytes.getSlice(at: base + head.target.lowerBound, length: head.target.count)!,
            minorVersion: head.minorVersion, http2: stream.isHTTP2, status: status, flags: flags, bytesReceived: received, bytesSent: sent,
            durationMs: Int((end - start).nanoseconds / 1_000_000), upstreamServiceMs: serviceMs,
            upstreamHost: host?.endpoint, requestID: requestID, route: routeName, traceIDHigh: trace.upstream.traceIDHigh,
            traceIDLow: trace.upstream.traceIDLow))
    }

    /// The gateway's span of a sampled request, with OpenTelemetry's HTTP attribute names and
    /// Envoy's (`response_flags`, `guid:x-request-id`). Built only when spans are exported.
    private static func exportSpan(
        _ head: MessageHead, _ headBytes: ByteBuffer, start: NIODeadline, end: NIODeadline, status: Int,
        flags: ResponseFlags, host: Endpoint?, requestID: ByteBuffer?, route: Route?, trace: RequestTrace
    ) -> SpanRecord {
        let (method, target) = headBytes.withUnsafeReadableBytes { b in
            (String(decoding: UnsafeRawBufferPointer(rebasing: b[head.method]), as: UTF8.self),
             String(decoding: UnsafeRawBufferPointer(rebasing: b[head.target]), as: UTF8.self))
        }
        var flagText: [UInt8] = []
        flags.write(into: &flagText)
        var attributes: [(String, SpanRecord.Value)] = [
            ("http.request.method", .string(method)), ("url.path", .string(target)),
            ("http.response.status_code", .int(status)), ("response_flags", .string(String(decoding: flagText, as: UTF8.self))),
            ("component", .string("proxy")),
        ]
        if let route { attributes.append(("route_name", .string(route.config.name))) }
        if let host { attributes.append(("upstream_address", .string(host.description))) }
        if let requestID { attributes.append(("guid:x-request-id", .string(String(buffer: requestID)))) }
        // Envoy names a gateway's span after the route (Istio: `<host>:<port>/*`); the method leads,
        // as OpenTelemetry's HTTP server spans do.
        return trace.span(name: "\(method) \(route?.config.name ?? "no route")", start: start, end: end, attributes: attributes,
                          isError: status >= 500)
    }
}
