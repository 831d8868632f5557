import Foundation
import Instrumentation
import Logging
import TraceWire
import Tracing

/// The services' side of traces: a swift-distributed-tracing `Tracer` speaking W3C trace context
/// (so a request continues the trace the gateway, or a client, started), the trace id in every
/// log line written while a request runs, and spans exported over OTLP/HTTP JSON when a
/// collector is configured (`--otlp-endpoint`, or OpenTelemetry's `OTEL_EXPORTER_OTLP_*`).
public enum ShopTracing {
    /// Installs the tracer for this process (once: swift-distributed-tracing's rule).
    public static func bootstrap(service: String, otlpEndpoint: String?) throws {
        var exporter: OTLPExporter? = nil
        if let url = otlpEndpoint {
            switch OTLPExporter.Endpoint.parse(url) {
            case .success(let e): exporter = OTLPExporter(endpoint: e, serviceName: service, scope: "maskshop")
            case .failure(let e): throw ShopTracingError(description: "--otlp-endpoint \(url): \(e)")
            }
        }
        InstrumentationSystem.bootstrap(ShopTracer(exporter: exporter))
    }

    /// The collector from the environment, as OpenTelemetry SDKs read it: the traces endpoint
    /// whole, or the base endpoint with `/v1/traces` appended.
    public static func otlpEndpoint(environment: [String: String]) -> String? {
        if let e = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !e.isEmpty { return e }
        if var e = environment["OTEL_EXPORTER_OTLP_ENDPOINT"], !e.isEmpty {
            while e.hasSuffix("/") { e.removeLast() }
            return e + "/v1/traces"
        }
        return nil
    }

    /// Puts the current request's `trace_id` and `span_id` into each log line (swift-log reads it
    /// from the task-local context the tracing middleware sets while a request runs).
    public static let loggingMetadata = Logger.MetadataProvider {
        guard let trace = InstrumentationContext.current?.w3cTrace else { return [:] }
        return ["trace_id": .string(trace.current.traceIDHex), "span_id": .string(trace.current.spanIDHex)]
    }
}

public struct ShopTracingError: Error, CustomStringConvertible {
    public var description: String
}

/// A span's place in its trace, as the context carries it.
struct W3CTrace: Sendable {
    /// This span's ids and sampling decision: what goes out in `traceparent` to the next hop.
    var current: TraceParent
    /// The span it continues (0: it starts the trace).
    var parentSpanID: UInt64
    var traceState: String?
}

private enum W3CTraceKey: InstrumentationContextKey {
    typealias Value = W3CTrace
}

extension InstrumentationContext {
    var w3cTrace: W3CTrace? {
        get { self[W3CTraceKey.self] }
        set { self[W3CTraceKey.self] = newValue }
    }
}

/// W3C Trace Context propagation and spans for the shop (the `Tracer` Hummingbird's
/// `TracingMiddleware` and `PeerClient` use). A new trace is always sampled; a continued one
/// keeps its caller's decision.
final class ShopTracer: Tracer {
    let exporter: OTLPExporter?

    init(exporter: OTLPExporter?) {
        self.exporter = exporter
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        // An invalid traceparent is treated as absent (W3C §3.2.2.7): the span starts a new trace.
        guard let value = extractor.extract(key: "traceparent", from: carrier), let parent = TraceParent.parse(value) else { return }
        var state = extractor.extract(key: "tracestate", from: carrier)
        if let s = state, s.isEmpty || s.utf8.count > TraceParent.maxTraceStateLength { state = nil }
        context.w3cTrace = W3CTrace(current: parent, parentSpanID: 0, traceState: state)
    }

    func inject<Carrier, Inject: Injector>(_ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let trace = context.w3cTrace else { return }
        injector.inject(trace.current.headerValue, forKey: "traceparent", into: &carrier)
        if let state = trace.traceState { injector.inject(state, forKey: "tracestate", into: &carrier) }
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> InstrumentationContext, ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt
    ) -> ShopSpan {
        var context = context()
        var random = SystemRandomNumberGenerator()
        let trace: W3CTrace
        if let parent = context.w3cTrace {
            trace = W3CTrace(current: parent.current.child(sampled: parent.current.sampled, using: &random),
                             parentSpanID: parent.current.spanID, traceState: parent.traceState)
        } else {
            trace = W3CTrace(current: .newTrace(sampled: true, using: &random), parentSpanID: 0, traceState: nil)
        }
        context.w3cTrace = trace
        return ShopSpan(operationName: operationName, context: context, trace: trace, kind: kind,
                        start: instant().nanosecondsSinceEpoch, exporter: trace.current.sampled ? exporter : nil)
    }

    func forceFlush() {}
}

/// One span of a service; sent to the exporter (if any, and sampled) when it ends.
final class ShopSpan: Span, @unchecked Sendable {
    // @unchecked: the mutable fields are guarded by `lock`.
    let context: InstrumentationContext
    let trace: W3CTrace
    let kind: SpanKind
    let start: UInt64
    let exporter: OTLPExporter?
    private let lock = NSLock()
    private var name: String
    private var _attributes = SpanAttributes()
    private var error = false
    private var ended = false

    init(operationName: String, context: InstrumentationContext, trace: W3CTrace, kind: SpanKind, start: UInt64,
         exporter: OTLPExporter?) {
        name = operationName
        self.context = context
        self.trace = trace
        self.kind = kind
        self.start = start
        self.exporter = exporter
    }

    var operationName: String {
        get { lock.withLock { name } }
        set { lock.withLock { if !ended { name = newValue } } }
    }

    var attributes: SpanAttributes {
        get { lock.withLock { _attributes } }
        set { lock.withLock { if !ended { _attributes = newValue } } }
    }

    var isRecording: Bool { lock.withLock { !ended } }

    func setStatus(_ status: SpanStatus) {
        lock.withLock { if !ended && status.code == .error { error = true } }
    }

    func addEvent(_ event: SpanEvent) {}
    func addLink(_ link: SpanLink) {}

    func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        lock.withLock { if !ended { _attributes["exception.message"] = "\(error)" } }
    }

    func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let (first, name, attributes, error) = lock.withLock {
            defer { ended = true }
            return (!ended, self.name, _attributes, self.error)
        }
        guard first, let exporter else { return }
        var fields: [(String, SpanRecord.Value)] = []
        attributes.forEach { key, value in
            switch value {
            case .string(let s): fields.append((key, .string(s)))
            case .int64(let i): fields.append((key, .int(Int(i))))
            case .int32(let i): fields.append((key, .int(Int(i))))
            case .double(let d): fields.append((key, .double(d)))
            case .bool(let b): fields.append((key, .bool(b)))
            default: fields.append((key, .string("\(value)")))
            }
        }
        let status = fields.first { $0.0 == "http.response.status_code" }.map { $0.1 }
        let isError = error || { if case .int(let code)? = status { return code >= 500 } else { return false } }()
        let kind: SpanRecord.Kind = switch self.kind {
        case .server: .server
        case .client: .client
        default: .internal
        }
        exporter.submit(SpanRecord(trace: trace.current, parentSpanID: trace.parentSpanID, name: name, kind: kind,
                                   startUnixNanos: start, endUnixNanos: instant().nanosecondsSinceEpoch,
                                   attributes: fields, isError: isError))
    }
}
