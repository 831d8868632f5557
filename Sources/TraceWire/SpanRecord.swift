/// One finished span, as the OTLP exporter sends it (opentelemetry-proto `trace/v1/trace.proto`).
public struct SpanRecord: Sendable {
    /// OTLP's `Span.SpanKind` numbers.
    public enum Kind: Int, Sendable {
        case `internal` = 1, server = 2, client = 3
    }

    public enum Value: Sendable, Equatable {
        case string(String)
        case int(Int)
        case bool(Bool)
        case double(Double)
    }

    public var traceIDHigh: UInt64
    public var traceIDLow: UInt64
    public var spanID: UInt64
    /// 0 for a span that starts its trace.
    public var parentSpanID: UInt64
    public var name: String
    public var kind: Kind
    public var startUnixNanos: UInt64
    public var endUnixNanos: UInt64
    public var attributes: [(String, Value)]
    /// OTLP status `STATUS_CODE_ERROR` (a 5xx answer, a thrown error).
    public var isError: Bool

    public init(trace: TraceParent, parentSpanID: UInt64, name: String, kind: Kind, startUnixNanos: UInt64,
                endUnixNanos: UInt64, attributes: [(String, Value)] = [], isError: Bool = false) {
        traceIDHigh = trace.traceIDHigh
        traceIDLow = trace.traceIDLow
        spanID = trace.spanID
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.startUnixNanos = startUnixNanos
        self.endUnixNanos = max(endUnixNanos, startUnixNanos)
        self.attributes = attributes
        self.isError = isError
    }
}

/// OTLP/HTTP's JSON encoding (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding):
/// ids as lowercase hex, 64-bit integers as decimal strings, field names in lowerCamelCase.
public enum OTLPJSON {
    /// An `ExportTraceServiceRequest` with one resource (`service.name`) and one scope.
    public static func exportRequest(serviceName: String, scope: String, spans: some Collection<SpanRecord>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + spans.count * 512)
        out += #"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"#.utf8
        string(serviceName, into: &out)
        out += #"}}]},"scopeSpans":[{"scope":{"name":"#.utf8
        string(scope, into: &out)
        out += #"},"spans":["#.utf8
        var first = true
        for s in spans {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            span(s, into: &out)
        }
        out += "]}]}]}".utf8
        return out
    }

    static func span(_ s: SpanRecord, into out: inout [UInt8]) {
        out += #"{"traceId":""#.utf8
        out += TraceParent.hex(s.traceIDHigh, s.traceIDLow).utf8
        out += #"","spanId":""#.utf8
        out += TraceParent.hex(s.spanID).utf8
        out += #"""#.utf8
        if s.parentSpanID != 0 {
            out += #","parentSpanId":""#.utf8
            out += TraceParent.hex(s.parentSpanID).utf8
            out += #"""#.utf8
        }
        out += #","name":"#.utf8
        string(s.name, into: &out)
        out += #","kind":\#(s.kind.rawValue),"startTimeUnixNano":"\#(s.startUnixNanos)","endTimeUnixNano":"\#(s.endUnixNanos)","attributes":["#.utf8
        for (i, (key, value)) in s.attributes.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += #"{"key":"#.utf8
            string(key, into: &out)
            out += #","value":{"#.utf8
            switch value {
            case .string(let v):
                out += #""stringValue":"#.utf8
                string(v, into: &out)
            case .int(let v): out += #""intValue":"\#(v)""#.utf8
            case .bool(let v): out += #""boolValue":\#(v)"#.utf8
            case .double(let v): out += (v.isFinite ? #""doubleValue":\#(v)"# : #""stringValue":"\#(v)""#).utf8
            }
            out += "}}".utf8
        }
        out += #"],"status":{"code":\#(s.isError ? 2 : 0)}}"#.utf8
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped (the values
    /// include paths and header values a client chose).
    static func string(_ s: String, into out: inout [UInt8]) {
        let hex: StaticString = "0123456789abcdef"
        out.append(UInt8(ascii: "\""))
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\"))
                out.append(c)
            case 0..<0x20, 0x7F:
                out += "\\u00".utf8
                out.append(hex.utf8Start[Int(c >> 4)])
                out.append(hex.utf8Start[Int(c & 0xF)])
            default:
                out.append(c)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
