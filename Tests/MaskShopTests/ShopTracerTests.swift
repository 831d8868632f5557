import Instrumentation
import TraceWire
import Tracing
import XCTest

@testable import MaskShop

/// The services' tracer on its own: what it takes from a caller's headers and what it passes on.
final class ShopTracerTests: XCTestCase {
    struct Extract: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    }

    struct Inject: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    let tracer = ShopTracer(exporter: nil)
    let client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    /// Extracts `headers` as the tracing middleware does, starts the request's span and returns
    /// what a call made inside it sends on.
    func passedOn(_ headers: [String: String]) -> [String: String] {
        var context = InstrumentationContext.topLevel
        tracer.extract(headers, into: &context, using: Extract())
        let span = tracer.startSpan("POST /orders", context: context, ofKind: .server, at: DefaultTracerClock.now,
                                    function: #function, file: #fileID, line: #line)
        defer { span.end() }
        var out: [String: String] = [:]
        tracer.inject(span.context, into: &out, using: Inject())
        return out
    }

    func testContinuesAValidTraceWithASpanOfItsOwn() throws {
        let out = passedOn(["traceparent": client, "tracestate": "congo=t61rcWkgMzE"])
        let sent = try XCTUnwrap(TraceParent.parse(out["traceparent"] ?? ""), "\(out)")
        XCTAssertEqual(sent.traceIDHex, "0af7651916cd43dd8448eb211c80319c")
        XCTAssertNotEqual(sent.spanIDHex, "b7ad6b7169203331")
        XCTAssertTrue(sent.sampled)
        XCTAssertEqual(out["tracestate"], "congo=t61rcWkgMzE")
        XCTAssertFalse(try XCTUnwrap(TraceParent.parse(passedOn(["traceparent": String(client.dropLast()) + "0"])["traceparent"] ?? ""))
            .sampled, "the caller's decision is kept")
    }

    func testInvalidOrMissingTraceparentStartsANewTrace() throws {
        for headers in [[:], ["traceparent": client.uppercased()], ["traceparent": "00-" + String(repeating: "0", count: 32) + "-b7ad6b7169203331-01"],
                        ["traceparent": client + "-x", "tracestate": "k=v"]] {
            let out = passedOn(headers)
            let sent = try XCTUnwrap(TraceParent.parse(out["traceparent"] ?? ""), "\(headers) -> \(out)")
            XCTAssertNotEqual(sent.traceIDHex, "0af7651916cd43dd8448eb211c80319c", "\(headers)")
            XCTAssertNil(out["tracestate"], "\(headers)")
        }
        let long = passedOn(["traceparent": client, "tracestate": "k=" + String(repeating: "v", count: 511)])
        XCTAssertNil(long["tracestate"], "over 512 bytes it is dropped, not cut")
    }

    func testLogLinesCarryTheTraceOnlyWhileARequestRuns() throws {
        XCTAssertEqual(ShopTracing.loggingMetadata.get(), [:])
        var context = InstrumentationContext.topLevel
        tracer.extract(["traceparent": client], into: &context, using: Extract())
        let span = tracer.startSpan("GET /x", context: context, ofKind: .server, at: DefaultTracerClock.now,
                                    function: #function, file: #fileID, line: #line)
        let metadata = InstrumentationContext.$current.withValue(span.context) { ShopTracing.loggingMetadata.get() }
        XCTAssertEqual(metadata["trace_id"], "0af7651916cd43dd8448eb211c80319c")
        XCTAssertEqual(metadata["span_id"].map { "\($0)" }, span.trace.current.spanIDHex)
        span.end()
    }
}
