import Atomics
import NIOCore
import TraceWire

/// Everything one event loop owns: its view of the config, its connection pools, its random
/// generator and access log buffer. Touched only on `eventLoop`, so the request path takes no lock.
final class Worker: @unchecked Sendable {
    // @unchecked: every mutable field is confined to `eventLoop`; other threads only `execute` on it.
    let eventLoop: EventLoop
    /// This loop's row in the sharded counters.
    let row: Int
    let listenerStats: ListenerStats
    var snapshot: ConfigSnapshot
    /// The snapshot's tracing, copied here so a request reads plain fields, not the shared
    /// snapshot (and takes no reference to the exporter: a count every loop would write).
    private(set) var sampleThreshold: UInt64
    private(set) var spanExporter: OTLPExporter?
    /// Sampled spans waiting to be handed to the exporter (at the tick, or when this many).
    private var spans: [SpanRecord] = []
    static let spanBatch = 128
    var random = FastRandom()
    let accessLog: AccessLog
    private var pools: [ObjectIdentifier: ClusterPool] = [:]
    /// How this loop's pools open upstream connections (tests substitute embedded channels).
    var connector: UpstreamConnector = SocketConnector()
    /// Flushes and continuations for the end of the loop's round, shared by its pools and connections.
    let roundEnd: RoundEndQueue
    var draining = false
    /// Open downstream connections, so a drain can close the idle ones and the tick can time them out.
    var downstreams: [ObjectIdentifier: DownstreamHandler] = [:]
    /// Open HTTP/2 client connections, for the same two purposes.
    var http2Connections: [ObjectIdentifier: HTTP2DownstreamConnection] = [:]
    /// The time as of the last tick. The request path stamps activity and idleness with it (a
    /// load and a store instead of a clock read), so the stream idle and idle timeouts, minutes
    /// long, may fire up to one tick early; the request headers timeout stamps with the clock.
    private(set) var coarseNow = NIODeadline.now()
    static let tickInterval = TimeAmount.milliseconds(250)

    init(index: Int, eventLoop: EventLoop, snapshot: ConfigSnapshot, listenerStats: ListenerStats,
         accessLogWriter: AccessLogWriter?) {
        self.eventLoop = eventLoop
        roundEnd = RoundEndQueue(eventLoop: eventLoop)
        row = ShardedCounters.row(forLoop: index)
        self.snapshot = snapshot
        sampleThreshold = snapshot.tracing.sampleThreshold
        spanExporter = snapshot.tracing.exporter
        self.listenerStats = listenerStats
        accessLog = AccessLog(writer: accessLogWriter)
    }

    /// A worker with a writer of its own (or none), for a loop on its own.
    convenience init(index: Int, eventLoop: EventLoop, snapshot: ConfigSnapshot, listenerStats: ListenerStats,
                     accessLogFD: Int32?) {
        self.init(index: index, eventLoop: eventLoop, snapshot: snapshot, listenerStats: listenerStats,
                  accessLogWriter: accessLogFD.map { AccessLogWriter(fd: $0) })
    }

    /// Head buffers of closed client connections, for the next ones to take: a connection per
    /// request then allocates none of its own. Bounded in number and in the size of each kept.
    private var spareHeads: [ByteBuffer] = []
    static let spareHeadsKept = 128
    static let spareHeadMaxCapacity = 8 * 1024

    @inline(__always) func takeSpareHead() -> ByteBuffer? { spareHeads.popLast() }

    func keepSpareHead(_ buffer: ByteBuffer) {
        eventLoop.assertInEventLoop()
        guard spareHeads.count < Self.spareHeadsKept, buffer.capacity <= Self.spareHeadMaxCapacity else { return }
        spareHeads.append(buffer)
    }

    /// The pool handed out last (and for which snapshot): a run of requests to one cluster
    /// then skips hashing.
    private var lastPool: ClusterPool?

    @inline(__always) func pool(for cluster: ClusterSnapshot) -> ClusterPool {
        if let last = lastPool, last.snapshot === cluster { return last }
        let p = lookUpPool(for: cluster)
        lastPool = p
        return p
    }

    private func lookUpPool(for cluster: ClusterSnapshot) -> ClusterPool {
        let id = ObjectIdentifier(cluster.cluster)
        if let p = pools[id] {
            if p.snapshot !== cluster { p.update(cluster) }
            return p
        }
        let p = ClusterPool(snapshot: cluster, eventLoop: eventLoop, row: row, connector: connector, roundEnd: roundEnd)
        pools[id] = p
        return p
    }

    func install(_ new: ConfigSnapshot) {
        eventLoop.assertInEventLoop()
        // Two reloads compile in order under the runtime's lock but are handed over by two
        // tasks: an older snapshot arriving second must not replace the newer one.
        guard new.version > snapshot.version else { return }
        snapshot = new
        flushSpans()
        sampleThreshold = new.tracing.sampleThreshold
        spanExporter = new.tracing.exporter
        lastPool = nil
        for (id, pool) in pools {
            if let c = new.clusters[pool.cluster.name], c.cluster === pool.cluster {
                pool.update(c)
            } else {
                // The cluster left the config: close its idle connections; busy ones finish.
                pool.draining = true
                pool.sweepIdle(now: .now())
                pools[id] = nil
            }
        }
    }

    /// Periodic housekeeping: downstream timeouts, idle upstream connections, access log flush.
    func tick() {
        eventLoop.assertInEventLoop()
        let now = NIODeadline.now()
        coarseNow = now
        // Iterates the dictionary as it is now (value semantics): a timed-out connection that
        // leaves `downstreams` while this runs costs a copy then, not on every tick.
        for d in downstreams.values { d.checkTimeouts(now: now) }
        for c in http2Connections.values { c.checkTimeouts(now: now) }
        for pool in pools.values { pool.sweepIdle(now: now) }
        accessLog.flush()
        flushSpans()
    }

    /// Keeps a sampled request's span for the exporter; handed over in batches, never waited for.
    func recordSpan(_ span: SpanRecord) {
        eventLoop.assertInEventLoop()
        guard let exporter = spanExporter else { return }
        if spans.capacity == 0 { spans.reserveCapacity(Self.spanBatch) }
        spans.append(span)
        if spans.count >= Self.spanBatch { exporter.submit(contentsOf: &spans) }
    }

    func flushSpans() {
        guard !spans.isEmpty else { return }
        if let exporter = spanExporter {
            exporter.submit(contentsOf: &spans)
        } else {
            spans.removeAll(keepingCapacity: true)
        }
    }

    func startDraining() {
        eventLoop.assertInEventLoop()
        draining = true
        for pool in pools.values {
            pool.draining = true
            pool.sweepIdle(now: .now())
        }
        for d in downstreams.values { d.closeIfIdle() }
        // HTTP/2: GOAWAY, and each connection closes after its last stream.
        for c in http2Connections.values { c.goAway() }
    }

    /// Request ids are UUIDv4 text, written straight into the upstream head.
    @inline(__always) func writeRequestID(into out: inout ByteBuffer) {
        var a = random.next(), b = random.next()
        a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000  // version 4
        b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000  // variant 10
        let hex: StaticString = "0123456789abcdef"
        let h = hex.utf8Start
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: 36) { p in
            var i = 0
            func put(_ v: UInt64, _ nibbles: Int, _ top: Int) {
                var s = top
                for _ in 0..<nibbles {
                    p[i] = h[Int((v >> UInt64(s)) & 0xF)]
                    i += 1
                    s -= 4
                }
            }
            put(a, 8, 60); p[i] = 0x2D; i += 1
            put(a, 4, 28); p[i] = 0x2D; i += 1
            put(a, 4, 12); p[i] = 0x2D; i += 1
            put(b, 4, 60); p[i] = 0x2D; i += 1
            put(b, 12, 44)
            return 36
        }
    }
}
