import HTTP1Wire
import NIOCore

/// A copy of a request sent to a route's mirror cluster (Envoy's shadow writer): fire and
/// forget. It is one `UpstreamRequest` (pool wait, host accounting, the shadow cluster's own
/// breakers and counters) whose owner drops the answer, so the request it copies never waits for
/// it, never sees its failures and is never slowed by it. Confined to the downstream's event loop.
///
/// Bounds: a copy is only made of a request whose whole body the router kept
/// (`RouterFilter.maxReplayBytes`, as Envoy shadows only buffered bodies); per event loop and
/// shadow cluster at most `maxInFlight` copies and `maxBytesInFlight` body bytes are out at once,
/// past which copies are dropped (`mirror.dropped`) rather than queued. A copy that cannot get a
/// connection fails as any request does, counted by the shadow cluster
/// (`upstream_rq_pending_overflow`, `upstream_cx_connect_fail`, ...), and is dropped.
final class ShadowRequest: UpstreamRequestOwner {
    /// Each holds at most one upstream connection (or a place in its pending queue) and its body.
    static let maxInFlight = 256
    static let maxBytesInFlight = 64 << 20

    private let pool: ClusterPool
    private var upstream: UpstreamRequest?
    private var body: ByteBuffer?
    private let bodyBytes: Int
    /// The route's timeout, over the whole copy (pool wait, response head and body).
    private var timer: Scheduled<Void>?

    private init(pool: ClusterPool, body: ByteBuffer?) {
        self.pool = pool
        self.body = body
        bodyBytes = body?.readableBytes ?? 0
    }

    /// Sends the sampled copies of a request the router has whole: `head` is the head the
    /// upstream gets (its Host is suffixed here), `body` the complete body (framing included).
    static func mirror(route: Route, head: ByteBuffer, body: ByteBuffer?, requestIsHead: Bool, worker: Worker) {
        worker.eventLoop.assertInEventLoop()
        var shadowHead: ByteBuffer? = nil
        for m in route.mirrors {
            // Envoy's runtime_fraction: a share in millionths, drawn per request and per mirror.
            guard m.millionths >= 1_000_000 || worker.random.below(1_000_000) < m.millionths else { continue }
            // A request whose body outlasted a reload holds the old config's route. Its copy goes to
            // the shadow cluster as the config in force has it (Envoy looks the cluster up by name
            // when it shadows), or nowhere if the cluster left: handing the old snapshot to the
            // worker would turn this loop's pool back to the old hosts (draining the new ones), or
            // make a pool again for a cluster the config no longer has.
            guard let cluster = worker.snapshot.clusters[m.cluster.name], cluster.cluster === m.cluster.cluster else {
                route.stats.mirrorDropped.wrappingIncrement(ordering: .relaxed)
                continue
            }
            let pool = worker.pool(for: cluster)
            let bytes = body?.readableBytes ?? 0
            guard pool.shadowsInFlight < maxInFlight, pool.shadowBytesInFlight + bytes <= maxBytesInFlight else {
                route.stats.mirrorDropped.wrappingIncrement(ordering: .relaxed)
                continue
            }
            guard let host = pool.pickHost(policy: cluster.policy.loadBalancer, exclude: nil, random: &worker.random) else {
                cluster.stats.inc(.upstream_cx_none_healthy, row: worker.row)
                route.stats.mirrorDropped.wrappingIncrement(ordering: .relaxed)
                continue
            }
            if shadowHead == nil { shadowHead = Self.shadowHead(head) }
            let shadow = ShadowRequest(pool: pool, body: body)
            pool.shadowsInFlight += 1
            pool.shadowBytesInFlight += bytes
            route.stats.mirrorSent.wrappingIncrement(ordering: .relaxed)
            // Envoy bounds a shadow by the route's timeout, until its response is whole (a shadow
            // upstream that stalls its body would otherwise hold its connection and its place
            // for ever); with none it is bounded by the caps above.
            let request = UpstreamRequest(
                owner: shadow, hostPool: pool.pool(for: host, http2: cluster.upstreamProtocol == .http2), cluster: cluster, eventLoop: worker.eventLoop,
                row: worker.row, perTryTimeout: route.timeout ?? route.perTryTimeout, requestIsHead: requestIsHead)
            shadow.upstream = request
            if let timeout = route.timeout {
                shadow.timer = worker.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) { shadow.timedOut() }
            }
            request.start(head: shadowHead!, requestComplete: true)
        }
    }

    /// The route's timeout passed before the answer was whole: the try is reset (its connection,
    /// with a response not read to the end, closes) and the copy ends.
    private func timedOut() {
        timer = nil
        guard let upstream else { return }
        pool.cluster.stats.inc(.upstream_rq_timeout, row: pool.row)
        upstream.reset(timedOut: true)
        finish()
    }

    private func finish() {
        guard upstream != nil else { return }
        upstream = nil
        body = nil
        timer?.cancel()
        timer = nil
        pool.shadowsInFlight -= 1
        pool.shadowBytesInFlight -= bodyBytes
        assert(pool.shadowsInFlight >= 0 && pool.shadowBytesInFlight >= 0, "shadow accounting went negative")
    }

    // MARK: UpstreamRequestOwner: the answer is read to its end (so the connection is reused) and dropped.

    func upstreamReady(_ request: UpstreamRequest) {
        if let body, body.readableBytes > 0 { request.sendBody(body) }
        body = nil
    }

    func upstreamHead(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, framing: BodyFraming,
                      serviceMs: Int) -> Bool { true }
    func upstreamInterimHead(_ bytes: ByteBuffer) {}
    func upstreamBody(_ part: ByteBuffer) {}
    func upstreamReadComplete() {}
    func upstreamResponseEnd(_ request: UpstreamRequest) { finish() }
    func upstreamTryFailed(_ request: UpstreamRequest, _ result: TryResult, reason: String) { finish() }
    /// The whole body is already handed to the connection: nothing to pause.
    func upstreamWritabilityChanged(_ writable: Bool) {}
    /// A shadow never asks to switch protocols (upgrades are not mirrored).
    func upstreamSwitchedProtocols(_ request: UpstreamRequest, _ head: MessageHead, bytes: ByteBuffer, rest: ByteBuffer?,
                                   connection: UpstreamConnection) {
        connection.close()
    }

    // MARK: the shadow head

    /// `head` with `-shadow` appended to its Host's name, before any port (Envoy's shadow host
    /// suffix: `foo:8080` becomes `foo-shadow:8080`). Every request sent upstream has a Host line.
    static func shadowHead(_ head: ByteBuffer) -> ByteBuffer {
        head.withUnsafeReadableBytes { b -> ByteBuffer in
            var out = ByteBuffer()
            out.reserveCapacity(b.count + 7)
            var i = 0
            // The request line.
            while i < b.count && b[i] != 0x0A { i += 1 }
            i += 1
            var copied = 0
            while i < b.count {
                let start = i
                while i < b.count && b[i] != 0x0A { i += 1 }
                let lineEnd = i  // at LF
                i += 1
                guard lineEnd - start > 5, equalsLowercase(b, start..<(start + 5), "host:") else { continue }
                // The value without surrounding whitespace and the CR.
                var vs = start + 5
                while vs < lineEnd && (b[vs] == 0x20 || b[vs] == 0x09) { vs += 1 }
                var ve = lineEnd
                while ve > vs && (b[ve - 1] == 0x0D || b[ve - 1] == 0x20 || b[ve - 1] == 0x09) { ve -= 1 }
                // The name ends at the port's colon, after an IPv6 literal's bracket.
                var nameEnd = ve
                var k = ve
                while k > vs {
                    k -= 1
                    if b[k] == UInt8(ascii: "]") { break }
                    if b[k] == UInt8(ascii: ":") {
                        nameEnd = k
                        break
                    }
                }
                out.writeBytes(UnsafeRawBufferPointer(rebasing: b[copied..<nameEnd]))
                out.writeStaticString("-shadow")
                copied = nameEnd
                break
            }
            out.writeBytes(UnsafeRawBufferPointer(rebasing: b[copied...]))
            return out
        }
    }
}
