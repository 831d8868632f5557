import Foundation
import XCTest

/// An executable on PATH, or a failure naming the package that brings it (never a skip: these
/// tests are the acceptance of "real clients as people type them").
func requireTool(_ name: String, install: String) throws -> URL {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let url = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    let message = "\(name) is not installed (needed by this test): \(install)"
    XCTFail(message)
    throw NSError(domain: "tools", code: 1, userInfo: [NSLocalizedDescriptionKey: message])
}

/// The scenario's own httpie lines, typed as they are written, against `maskshop up` with the
/// shipped config/gateway.json: the gateway on 8080, order on 8081, ... as in the scenario. The
/// whole shop runs in a network namespace of its own (`unshare -n`, as root), so those fixed ports
/// are free whatever else runs on this machine.
final class SeedHttpieTests: XCTestCase {
    /// The steps: the scenario's lines verbatim (the ones against its cloud load balancer's host
    /// with `localhost` in its place), then the README's `:8080` short form and a bad number.
    static let steps: [String] = [
        "http PUT :8080/inventories/1111 stock=100",
        "http POST localhost:8081/orders orderId=1111 productId=1111 qty=10",
        "http localhost:8081/orders/1",
        #"http PATCH localhost:8081/orders/1 type="cancel""#,
        "http localhost:8081/orders/1",
        "http localhost:8081/orders orderId=2222 productId=2222 qty=20   #success",
        "http POST localhost:8080/orders orderId=1111 productId=1111 qty=10   #success",
        "http localhost:8080/orders     # 주문 처리됨",
        "http localhost:8080/inventories/1111  #재고변경 확인",
        "http POST :8080/orders orderId=1111 productId=1111 qty=10",
        "http POST localhost:8081/orders orderId=abc productId=1111 qty=10",
    ]

    struct Answer {
        var status: Int
        var body: Any?
        var text: String
    }

    static func canUnshareNetwork(_ unshare: URL) -> Bool {
        let probe = Process()
        probe.executableURL = unshare
        probe.arguments = ["-n", "/bin/true"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }

    func testTheScenariosHttpieLinesWorkAsWritten() throws {
        let http = try requireTool("http", install: "pip install httpie")
        let unshare = try requireTool("unshare", install: "apt-get install -y util-linux")
        _ = try requireTool("ip", install: "apt-get install -y iproute2")
        let maskshop = try maskshopExecutable()
        _ = try requireGateway()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seed-httpie-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("httpie"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // Show status and headers with the body (httpie prints only the body into a pipe), and
        // never read the test's standard input as a request body.
        try #"{"default_options": ["--print=hb", "--pretty=none", "--ignore-stdin"]}"#
            .write(to: dir.appendingPathComponent("httpie/config.json"), atomically: true, encoding: .utf8)
        var script = """
            set -u
            ip link set lo up
            cd '\(packageRoot.path)'
            export PATH='\(http.deletingLastPathComponent().path)':"$PATH"
            export HTTPIE_CONFIG_DIR='\(dir.appendingPathComponent("httpie").path)'
            '\(maskshop.path)' up --data-dir '\(dir.appendingPathComponent("data").path)' --config config/gateway.json > '\(dir.path)/up.log' 2>&1 &
            UP=$!
            trap 'kill -TERM $UP 2>/dev/null; wait $UP 2>/dev/null' EXIT
            for _ in $(seq 1 300); do grep -q "all healthy" '\(dir.path)/up.log' && break; sleep 0.1; done
            grep -q "all healthy" '\(dir.path)/up.log' || { echo "@@@ shop did not start"; cat '\(dir.path)/up.log'; exit 1; }

            """
        for (i, step) in Self.steps.enumerated() {
            script += "echo '@@@ step \(i)'\n\(step)\necho\necho \"@@@ exit $?\"\n"
        }
        let p = Process()
        if Self.canUnshareNetwork(unshare) {
            p.executableURL = unshare
            p.arguments = ["-n", "/bin/bash", "-c", script]
        } else {
            // No namespace here (no privilege for it): the machine's own ports, if they are free.
            for port in [8080, 8081, 8082, 8083, 8084, 9901] where portInUse(port) {
                XCTFail("cannot make a network namespace, and port \(port) is in use: the scenario's lines need 8080-8084 and 9901")
                return
            }
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-c", script]
        }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, text)

        var answers: [Int: Answer] = [:]
        for part in text.components(separatedBy: "@@@ step ").dropFirst() {
            guard let nl = part.firstIndex(of: "\n"), let i = Int(part[..<nl]) else { continue }
            let output = String(part[part.index(after: nl)...])
            let statusLine = output.split(whereSeparator: \.isNewline).first { $0.hasPrefix("HTTP/1.1 ") } ?? ""
            let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
            var body: Any? = nil
            let blank = [output.range(of: "\n\n"), output.range(of: "\r\n\r\n")].compactMap { $0 }.min { $0.lowerBound < $1.lowerBound }
            if let sep = blank {
                let rest = output[sep.upperBound...]
                let json = rest.components(separatedBy: "\n@@@ exit").first ?? ""
                body = try? JSONSerialization.jsonObject(with: Data(json.utf8))
            }
            answers[i] = Answer(status: status, body: body, text: output)
        }
        func check(_ i: Int, _ status: Int, _ what: (Any?) -> Bool = { _ in true }, _ why: String) {
            let a = answers[i]
            XCTAssertEqual(a?.status, status, "\(Self.steps[i]): \(a?.text ?? "no output")")
            XCTAssertTrue(what(a?.body), "\(Self.steps[i]): \(why): \(a?.text ?? "no output")")
        }
        func field(_ name: String) -> (Any?) -> Any? { { ($0 as? [String: Any])?[name] } }
        check(0, 200, { field("stock")($0) as? Int == 100 }, "stock set from a numeric string")
        check(1, 201, { field("status")($0) as? String == "ordered" && field("orderId")($0) as? Int == 1111 }, "ordered, orderId a number")
        check(2, 200, { field("status")($0) as? String == "ordered" }, "the order, ordered")
        check(3, 200, { field("status")($0) as? String == "cancelled" }, "cancelled")
        check(4, 200, { field("status")($0) as? String == "cancelled" }, "the order, cancelled")
        check(5, 201, { field("qty")($0) as? Int == 20 }, "a POST (httpie posts when there are fields)")
        check(6, 201, { field("status")($0) as? String == "ordered" }, "ordered through the gateway")
        check(7, 200, { ($0 as? [[String: Any]])?.count == 3 }, "the three orders so far")
        check(8, 200, { field("productId")($0) as? Int == 1111 }, "the product's stock")
        check(9, 201, { field("status")($0) as? String == "ordered" }, "the short form")
        check(10, 400, { (field("error")($0) as? String)?.contains("'orderId'") == true }, "a 400 naming the field")
    }
}
