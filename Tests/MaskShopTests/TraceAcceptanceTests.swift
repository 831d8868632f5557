import Foundation
import TraceWire
import XCTest

/// Issue 15's acceptance for traces, with the real processes: a trace id a client sends appears
/// in the gateway's access log and in the order and delivery services' logs for the same order,
/// and the spans a collector receives chain gateway → order → gateway → delivery.
final class TraceAcceptanceTests: XCTestCase {
    let clientTrace = "0af7651916cd43dd8448eb211c80319c"
    let clientSpan = "b7ad6b7169203331"

    func testClientTraceIDInGatewayOrderAndDeliveryLogsForTheSameOrder() throws {
        let collector = try CollectorStub()
        defer { collector.stop() }
        let shop = try ShopCluster(viaGateway: true, keepLogs: true,
                                   otlpEndpoint: "http://127.0.0.1:\(collector.port)/v1/traces")
        XCTAssertEqual(shop.call("PUT", "/inventories/1111", ["stock": 100])?.status, 200)
        let placed = shop.call("POST", "/orders", ["orderId": 1111, "productId": 1111, "qty": 10],
                               headers: ["traceparent": "00-\(clientTrace)-\(clientSpan)-01"])
        XCTAssertEqual(placed?.status, 201)
        let id = try XCTUnwrap((placed?.json as? [String: Any])?["id"] as? Int, "\(String(describing: placed?.json))")
        // Another order in another trace: the lines must tell the two apart.
        XCTAssertEqual(shop.call("POST", "/orders", ["orderId": 2222, "productId": 1111, "qty": 1])?.status, 201)

        // The gateway's access log: the client's POST /orders and order's POST /deliveries (order
        // calls delivery through the gateway) carry the client's trace id as their last field.
        var access: [String] = []
        XCTAssertTrue(shop.eventually(10) {
            access = shop.log("gateway-access").split(separator: "\n").map(String.init).filter { $0.hasSuffix(" " + self.clientTrace) }
            return access.count >= 2
        }, shop.log("gateway-access"))
        XCTAssertTrue(access.contains { $0.contains("\"POST /orders HTTP/1.1\" 201") }, "\(access)")
        XCTAssertTrue(access.contains { $0.contains("\"POST /deliveries HTTP/1.1\" 201") }, "\(access)")

        // The services' logs: the line about this order, with the client's trace id in its metadata.
        let orderLine = shop.log("order").split(separator: "\n").first { $0.contains("order \(id) placed") }
        XCTAssertTrue(orderLine?.contains("trace_id=\(clientTrace)") == true, shop.log("order"))
        let deliveryLine = shop.log("delivery").split(separator: "\n").first { $0.contains("created for order \(id)") }
        XCTAssertTrue(deliveryLine?.contains("trace_id=\(clientTrace)") == true, shop.log("delivery"))
        XCTAssertTrue(shop.log("order").contains("POST /orders 201"), "each request's own line")
        let otherOrderLine = shop.log("order").split(separator: "\n").first { $0.contains("order \(id + 1) placed") }
        XCTAssertNotNil(otherOrderLine)
        XCTAssertFalse(otherOrderLine?.contains(clientTrace) ?? true, "the other order is in a trace of its own")

        // The spans, over OTLP/HTTP JSON: one trace, each span's parent the one before it.
        var spans: [[String: Any]] = []
        XCTAssertTrue(shop.eventually(10) {
            spans = collector.spans().filter { $0["traceId"] as? String == self.clientTrace }
            return spans.count >= 5
        }, "\(spans.count) spans of the trace: \(spans.map { $0["name"] ?? "" })")
        func span(_ name: String, kind: Int) -> [String: Any]? {
            spans.first { ($0["name"] as? String) == name && ($0["kind"] as? Int) == kind }
        }
        let edge = try XCTUnwrap(span("POST vs0.0", kind: 2), "the gateway's span for POST /orders")
        let orderServer = try XCTUnwrap(spans.first { ($0["name"] as? String)?.hasPrefix("/orders") == true && $0["kind"] as? Int == 2 },
                                        "\(spans.map { $0["name"] ?? "" })")
        let orderClient = try XCTUnwrap(span("POST /deliveries", kind: 3))
        let edge2 = try XCTUnwrap(span("POST vs0.1", kind: 2), "the gateway's span for POST /deliveries")
        let deliveryServer = try XCTUnwrap(spans.first { ($0["name"] as? String)?.hasPrefix("/deliveries") == true && $0["kind"] as? Int == 2 })
        XCTAssertEqual(edge["parentSpanId"] as? String, clientSpan)
        XCTAssertEqual(orderServer["parentSpanId"] as? String, edge["spanId"] as? String)
        XCTAssertEqual(orderClient["parentSpanId"] as? String, orderServer["spanId"] as? String)
        XCTAssertEqual(edge2["parentSpanId"] as? String, orderClient["spanId"] as? String)
        XCTAssertEqual(deliveryServer["parentSpanId"] as? String, edge2["spanId"] as? String)
        let services = Set(collector.posts().compactMap(CollectorStub.serviceName))
        XCTAssertTrue(services.isSuperset(of: ["gateway", "order", "delivery"]), "\(services)")
    }
}

/// An OpenTelemetry collector's OTLP/HTTP receiver, reduced to what the test reads: a real
/// socket, `POST /v1/traces` bodies kept, `200 {}` answered.
final class CollectorStub: @unchecked Sendable {
    private let fd: Int32
    let port: Int
    private let lock = NSLock()
    private var bodies: [(path: String, body: Data)] = []

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw NSError(domain: "collector", code: 1) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                // Closed here, after `stop()` shut it down, never from another thread: the loop
                // may be serving when `stop()` runs, and its next accept must not reach a socket
                // that reused the number.
                if c < 0 { close(fd); return }
                serve(c)
            }
        }.start()
    }

    private func serve(_ c: Int32) {
        defer { close(c) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        var headEnd: Range<Data.Index>? = nil
        var length = 0
        while true {
            if headEnd == nil, let r = data.range(of: Data("\r\n\r\n".utf8)) {
                headEnd = r
                let head = String(decoding: data[..<r.lowerBound], as: UTF8.self).lowercased()
                for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
                    length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let h = headEnd, data.count - h.upperBound >= length { break }
            guard data.count < 16 << 20 else { return }
            let n = recv(c, &buf, buf.count, 0)
            if n <= 0 { return }
            data.append(contentsOf: buf[0..<n])
        }
        let h = headEnd!
        let requestLine = String(decoding: data[..<h.lowerBound], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let path = requestLine.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        lock.withLock { bodies.append((path, Data(data[h.upperBound..<(h.upperBound + length)]))) }
        let reply = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".utf8)
        _ = reply.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func posts() -> [[String: Any]] {
        lock.withLock { bodies }.filter { $0.path == "/v1/traces" }.compactMap {
            try? JSONSerialization.jsonObject(with: $0.body) as? [String: Any]
        }
    }

    func spans() -> [[String: Any]] {
        posts().flatMap { root in
            (root["resourceSpans"] as? [[String: Any]] ?? []).flatMap { rs in
                (rs["scopeSpans"] as? [[String: Any]] ?? []).flatMap { $0["spans"] as? [[String: Any]] ?? [] }
            }
        }
    }

    static func serviceName(_ post: [String: Any]) -> String? {
        let rs = (post["resourceSpans"] as? [[String: Any]])?.first
        let attributes = (rs?["resource"] as? [String: Any])?["attributes"] as? [[String: Any]]
        return (attributes?.first { $0["key"] as? String == "service.name" }?["value"] as? [String: Any])?["stringValue"] as? String
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
    }
}
