import Foundation
import HTTP1Wire
import NIOCore
import TraceWire
import XCTest
@testable import GatewayCore

/// W3C `traceparent` parsing and writing, the head parser's trace context lines, OTLP's JSON and
/// the `tracing` config block, without sockets.
final class TraceContextTests: XCTestCase, ConfigLoading {
    // The W3C spec's own example.
    let example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    func testParsesTheSpecExample() throws {
        let p = try XCTUnwrap(TraceParent.parse(example))
        XCTAssertEqual(p.traceIDHigh, 0x4bf9_2f35_77b3_4da6)
        XCTAssertEqual(p.traceIDLow, 0xa3ce_929d_0e0e_4736)
        XCTAssertEqual(p.spanID, 0x00f0_67aa_0ba9_02b7)
        XCTAssertTrue(p.sampled)
        XCTAssertEqual(p.headerValue, example)
        XCTAssertEqual(p.traceIDHex, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertFalse(try XCTUnwrap(TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")).sampled)
        // Flags other than sampled are not carried on (version 00 defines none).
        XCTAssertEqual(TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")?.headerValue, example)
    }

    func testRefusesEveryMalformedValue() {
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // no flags
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // 00 has nothing after the flags
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // separators in the wrong place
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",  // not hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // a later version still needs a '-'
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ]
        for value in invalid {
            XCTAssertNil(TraceParent.parse(value), value)
        }
    }

    func testReadsALaterVersionAsVersion00() throws {
        let p = try XCTUnwrap(TraceParent.parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"))
        XCTAssertEqual(p.headerValue, example, "forwarded as the version it speaks")
        XCTAssertNotNil(TraceParent.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    }

    func testNewTracesAndChildSpansAreValidAndFresh() throws {
        var random = FastRandom(seed: 7)
        var traces = Set<String>()
        for _ in 0..<1000 {
            let t = TraceParent.newTrace(sampled: true, using: &random)
            let text = t.headerValue
            XCTAssertEqual(TraceParent.parse(text), t, text)
            traces.insert(t.traceIDHex)
            let child = t.child(sampled: t.sampled, using: &random)
            XCTAssertEqual(child.traceIDHex, t.traceIDHex)
            XCTAssertNotEqual(child.spanID, t.spanID)
        }
        XCTAssertEqual(traces.count, 1000)
    }

    /// The parser notes where the lines are; a repeated one is marked invalid (an empty range).
    func testHeadParserFindsTraceContextLines() throws {
        func parse(_ text: String) throws -> (MessageHead, [UInt8]) {
            let bytes = Array(text.utf8)
            let head = try bytes.withUnsafeBytes { try HeadParser.parse($0, kind: .request) }
            return (try XCTUnwrap(head), bytes)
        }
        let (head, bytes) = try parse("GET / HTTP/1.1\r\nHost: h\r\nTraceParent: \(example)\r\ntracestate: a=1\r\n\r\n")
        XCTAssertEqual(head.traceParent.map { String(decoding: bytes[$0], as: UTF8.self) }, example)
        XCTAssertEqual(head.traceState.map { String(decoding: bytes[$0], as: UTF8.self) }, "a=1")
        XCTAssertTrue(head.needsLineRewrite, "the client's lines are replaced by the gateway's")
        let (twice, _) = try parse("GET / HTTP/1.1\r\nHost: h\r\ntraceparent: \(example)\r\ntraceparent: \(example)\r\n\r\n")
        XCTAssertEqual(twice.traceParent?.isEmpty, true)
        let (named, _) = try parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: traceparent\r\ntraceparent: \(example)\r\n\r\n")
        XCTAssertNil(named.traceParent, "a hop-by-hop traceparent is not the client's trace")
        let (plain, _) = try parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        XCTAssertNil(plain.traceParent)
        XCTAssertFalse(plain.needsLineRewrite)
    }

    func testOTLPJSONIsWhatACollectorReads() throws {
        let trace = try XCTUnwrap(TraceParent.parse(example))
        let span = SpanRecord(trace: trace, parentSpanID: 0x1122_3344_5566_7788, name: "GET \"/x\"\n", kind: .server,
                              startUnixNanos: 1_700_000_000_000_000_000, endUnixNanos: 1_700_000_000_005_000_000,
                              attributes: [("http.response.status_code", .int(503)), ("url.path", .string("/a\\b\u{1}")),
                                           ("ok", .bool(false)), ("ratio", .double(0.5))],
                              isError: true)
        let bytes = OTLPJSON.exportRequest(serviceName: "gateway", scope: "test", spans: [span])
        let root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let rs = try XCTUnwrap((root["resourceSpans"] as? [[String: Any]])?.first)
        let resource = try XCTUnwrap((rs["resource"] as? [String: Any])?["attributes"] as? [[String: Any]])
        XCTAssertEqual(resource.first?["key"] as? String, "service.name")
        XCTAssertEqual((resource.first?["value"] as? [String: Any])?["stringValue"] as? String, "gateway")
        let s = try XCTUnwrap(((rs["scopeSpans"] as? [[String: Any]])?.first?["spans"] as? [[String: Any]])?.first)
        XCTAssertEqual(s["traceId"] as? String, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(s["spanId"] as? String, "00f067aa0ba902b7")
        XCTAssertEqual(s["parentSpanId"] as? String, "1122334455667788")
        XCTAssertEqual(s["name"] as? String, "GET \"/x\"\n")
        XCTAssertEqual(s["kind"] as? Int, 2)
        XCTAssertEqual(s["startTimeUnixNano"] as? String, "1700000000000000000")
        XCTAssertEqual(s["endTimeUnixNano"] as? String, "1700000000005000000")
        XCTAssertEqual((s["status"] as? [String: Any])?["code"] as? Int, 2)
        let attributes = try XCTUnwrap(s["attributes"] as? [[String: Any]])
        let byKey = Dictionary(uniqueKeysWithValues: attributes.map { ($0["key"] as! String, $0["value"] as! [String: Any]) })
        XCTAssertEqual(byKey["http.response.status_code"]?["intValue"] as? String, "503")
        XCTAssertEqual(byKey["url.path"]?["stringValue"] as? String, "/a\\b\u{1}")
        XCTAssertEqual(byKey["ok"]?["boolValue"] as? Bool, false)
        XCTAssertEqual(byKey["ratio"]?["doubleValue"] as? Double, 0.5)
    }

    // MARK: config

    let minimal = #""serviceEntries":[{"host":"svc","endpoints":[{"address":"127.0.0.1","port":1}]}]"#

    func testTracingBlock() throws {
        XCTAssertEqual(try load("{\(minimal)}").tracing, TracingConfig())
        let t = try load(#"{\#(minimal),"tracing":{"otlpEndpoint":"http://collector:4318","sampling":12.5,"serviceName":"edge"}}"#).tracing
        XCTAssertEqual(t.otlpEndpoint, OTLPExporter.Endpoint(host: "collector", port: 4318, path: "/v1/traces"))
        XCTAssertEqual(t.sampling, 12.5)
        XCTAssertEqual(t.serviceName, "edge")
        XCTAssertEqual(try load(#"{\#(minimal),"tracing":{"otlpEndpoint":"http://[::1]:9/x"}}"#).tracing.otlpEndpoint,
                       OTLPExporter.Endpoint(host: "::1", port: 9, path: "/x"))
        XCTAssertTrue(ConfigJSON.encode(try load(#"{\#(minimal),"tracing":{"otlpEndpoint":"http://c","sampling":5}}"#))
            .contains(#""tracing":{"otlpEndpoint":"http://c:4318/v1/traces","sampling":5.0,"serviceName":"gateway"}"#),
            "/config_dump shows the block with its defaults")
    }

    func testTracingBlockErrorsNameThePath() {
        XCTAssertEqual(error(#"{\#(minimal),"tracing":{"sampling":101}}"#), "tracing.sampling: must be <= 100 (a percentage), found 101.0")
        XCTAssertEqual(error(#"{\#(minimal),"tracing":{"sampling":-1}}"#), "tracing.sampling: must be >= 0, found -1.0")
        XCTAssertEqual(error(#"{\#(minimal),"tracing":{"otlpEndpoint":"https://c:4318"}}"#),
                       "tracing.otlpEndpoint: must be an http:// URL (OTLP/HTTP, no TLS)")
        XCTAssertEqual(error(#"{\#(minimal),"tracing":{"otlpEndpoint":"http://c:99999"}}"#), "tracing.otlpEndpoint: the port must be 1...65535")
        XCTAssertTrue(error(#"{\#(minimal),"tracing":{"otlpEndpiont":"http://c"}}"#).hasPrefix("tracing"), "unknown fields are refused")
        XCTAssertTrue(error(#"{\#(minimal),"tracing":{"serviceName":""}}"#).hasPrefix("tracing.serviceName"))
    }

    func testRoutesCannotWriteTraceContextHeaders() {
        for name in ["traceparent", "tracestate"] {
            let text = error(#"""
            {\#(minimal),"virtualServices":[{"http":[{"headers":{"request":{"set":{"\#(name)":"x"}}},
             "route":[{"destination":{"host":"svc"}}]}]}]}
            """#)
            XCTAssertTrue(text.contains("the gateway writes this header itself"), text)
        }
    }
}
