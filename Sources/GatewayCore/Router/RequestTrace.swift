#if canImport(Glibc)
import Glibc
#endif
import HTTP1Wire
import NIOCore
import TraceWire

/// A config version's tracing, compiled: the sampling draw as a threshold and the exporter spans
/// go to (nil: none are recorded).
struct TracingSettings: @unchecked Sendable {
    // @unchecked: the exporter is thread-safe (its queue is locked), the rest are values.
    /// A new trace is sampled when a draw is below this; `UInt64.max` samples every one without a draw.
    let sampleThreshold: UInt64
    let exporter: OTLPExporter?

    init(sampling: Double, exporter: OTLPExporter?) {
        precondition((0...100).contains(sampling))
        sampleThreshold = sampling >= 100 ? .max : UInt64(sampling / 100 * 0x1p64.nextDown)
        self.exporter = exporter
    }

    static let off = TracingSettings(sampling: 100, exporter: nil)
}

/// One request's W3C trace context, as Envoy's tracer handles it at the edge: a client's valid
/// `traceparent` continues (same trace id, its sampling decision) with a span of the gateway's
/// own as the upstream's parent; an invalid or missing one starts a new trace. Plain values,
/// decided once per request: every try and mirrored copy carries the same head.
struct RequestTrace {
    /// What goes upstream: the trace id, the gateway's span id and the sampling decision.
    let upstream: TraceParent
    /// The client's span, parent of the gateway's; 0 when the trace starts here.
    let clientSpanID: UInt64
    /// The client's `tracestate`, forwarded with a continued trace when it is one line of at
    /// most `TraceParent.maxTraceStateLength` bytes (offsets in the request head).
    let traceState: Range<Int>?

    @inline(__always)
    static func start(_ head: MessageHead, _ b: UnsafeRawBufferPointer, sampleThreshold: UInt64,
                      random: inout FastRandom) -> RequestTrace {
        if let range = head.traceParent, let client = TraceParent.parse(UnsafeRawBufferPointer(rebasing: b[range])) {
            var state = head.traceState
            if let s = state, s.isEmpty || s.count > TraceParent.maxTraceStateLength { state = nil }
            return RequestTrace(upstream: client.child(sampled: client.sampled, using: &random), clientSpanID: client.spanID,
                                traceState: state)
        }
        let sampled = sampleThreshold == .max || random.next() < sampleThreshold
        return RequestTrace(upstream: .newTrace(sampled: sampled, using: &random), clientSpanID: 0, traceState: nil)
    }

    /// `traceparent` (and the client's `tracestate`) lines for the upstream head.
    @inline(__always)
    func writeHeaders(from source: ByteBuffer, into out: inout ByteBuffer) {
        out.writeStaticString("traceparent: ")
        let upstream = self.upstream
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: TraceParent.length) { p in
            upstream.write(to: p)
            return TraceParent.length
        }
        out.writeStaticString("\r\n")
        if let state = traceState {
            out.writeStaticString("tracestate: ")
            out.writeImmutableBuffer(source.getSlice(at: source.readerIndex + state.lowerBound, length: state.count)!)
            out.writeStaticString("\r\n")
        }
    }

    /// The gateway's span of a request that ended at `end` (monotonic), for the exporter.
    func span(name: String, start: NIODeadline, end: NIODeadline, attributes: [(String, SpanRecord.Value)], isError: Bool)
        -> SpanRecord
    {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let endUnix = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        let duration = UInt64(max(0, (end - start).nanoseconds))
        // Both ends from one wall-clock read: the duration is the monotonic one.
        return SpanRecord(trace: upstream, parentSpanID: clientSpanID, name: name, kind: .server,
                          startUnixNanos: endUnix &- duration, endUnixNanos: endUnix, attributes: attributes, isError: isError)
    }
}
