import Foundation
import XCTest

/// The package root (this file is Tests/MaskShopTests/ShopCluster.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The folder holding the test bundle's build products (`.build*/debug`).
func productsDirectory() -> URL {
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent()
    }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    return dir
}

/// `maskshop`, built with the tests (`$MASKSHOP_BIN` overrides). Missing is a failure, not a skip.
func maskshopExecutable() throws -> URL {
    if let override = ProcessInfo.processInfo.environment["MASKSHOP_BIN"] { return URL(fileURLWithPath: override) }
    let url = productsDirectory().appendingPathComponent("maskshop")
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw NSError(domain: "shop", code: 2, userInfo: [NSLocalizedDescriptionKey:
            "maskshop is not built at \(url.path): `swift build --product maskshop` first, or set MASKSHOP_BIN"])
    }
    return url
}

/// The gateway next to maskshop (`$GATEWAY_BIN` overrides), if it is built and runs; nil otherwise.
func gatewayExecutable() -> URL? {
    let url: URL
    if let override = ProcessInfo.processInfo.environment["GATEWAY_BIN"] {
        url = URL(fileURLWithPath: override)
    } else {
        url = productsDirectory().appendingPathComponent("gateway")
    }
    guard FileManager.default.isExecutableFile(atPath: url.path) else { return nil }
    let p = Process()
    p.executableURL = url
    p.arguments = ["--help"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    p.waitUntilExit()
    return p.terminationStatus == 0 ? url : nil
}

/// The gateway, or an XCTSkip saying it is not built yet (the only reason a shop test skips).
func requireGateway() throws -> URL {
    guard let url = gatewayExecutable() else {
        throw XCTSkip("the gateway binary is not built next to the tests (or does not run); build it to run the gateway variant")
    }
    return url
}

/// A free TCP port (bound, then released) so a restarted service comes back where its peers expect it.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

struct HTTPResult {
    var status: Int
    var json: Any?
}

/// A tiny synchronous HTTP client over URLSession-free sockets (curl is not assumed).
func call(_ method: String, _ port: Int, _ path: String, _ body: Any? = nil, headers: [String: String] = [:]) -> HTTPResult? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var tv = timeval(tv_sec: 15, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard ok == 0 else { return nil }
    var payload = Data()
    if let body {
        payload = (body as? String).map { Data($0.utf8) } ?? (try! JSONSerialization.data(withJSONObject: body))
    }
    var req = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(payload.count)\r\n"
    for (k, v) in headers { req += "\(k): \(v)\r\n" }
    let bytes = Array((req + "\r\n").utf8) + Array(payload)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { break }
        response += chunk[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.count > 12, let status = Int(text.dropFirst(9).prefix(3)) else { return nil }
    var json: Any? = nil
    if let sep = text.range(of: "\r\n\r\n") {
        var body = String(text[sep.upperBound...])
        if text[..<sep.lowerBound].lowercased().contains("transfer-encoding: chunked") {
            // Hummingbird chunks JSON bodies: "<hex>\r\n<data>\r\n0\r\n\r\n"
            var out = ""
            var rest = Substring(body)
            while let nl = rest.range(of: "\r\n"), let size = Int(rest[..<nl.lowerBound], radix: 16), size > 0 {
                let start = nl.upperBound
                let end = rest.utf8.index(start, offsetBy: size)
                out += rest[start..<end]
                rest = rest[rest.utf8.index(end, offsetBy: 2)...]
            }
            body = out
        }
        json = try? JSONSerialization.jsonObject(with: Data(body.utf8))
    }
    return HTTPResult(status: status, json: json)
}

/// The four services (and, with `viaGateway`, the gateway in front of them) as real processes
/// on free ports, each restartable. Without the gateway, order calls delivery directly and the
/// test client talks to each service on its own port; the sync-call semantics are the same.
final class ShopCluster {
    let dir: URL
    var ports: [String: Int] = [:]
    var processes: [String: Process] = [:]
    let adminPort = freePort()
    let gatewayBinary: URL?
    let extraFlags: [String]
    /// Each process's output goes to `<dir>/<name>.log` and the gateway's access log to
    /// `<dir>/gateway-access.log` (else nowhere).
    let keepLogs: Bool
    /// Spans go here from the gateway (`tracing.otlpEndpoint`) and the services (`--otlp-endpoint`).
    let otlpEndpoint: String?

    init(viaGateway: Bool = false, flags: [String] = [], keepLogs: Bool = false, otlpEndpoint: String? = nil) throws {
        gatewayBinary = viaGateway ? try requireGateway() : nil
        extraFlags = flags
        self.keepLogs = keepLogs
        self.otlpEndpoint = otlpEndpoint
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("shop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in ["gateway", "order", "delivery", "inventory", "mypage"] { ports[name] = freePort() }
        if viaGateway {
            let hosts = ["order", "delivery", "inventory", "mypage"]
            let entries = hosts.map { "{\"host\":\"\($0)\",\"endpoints\":[{\"address\":\"127.0.0.1\",\"port\":\(ports[$0]!)}]}" }
            let routes = [("/orders", "order"), ("/deliveries", "delivery"), ("/inventories", "inventory"), ("/mypages", "mypage")]
                .map { "{\"match\":[{\"uri\":{\"prefix\":\"\($0.0)\"}}],\"route\":[{\"destination\":{\"host\":\"\($0.1)\"}}],\"timeout\":\"5s\"}" }
            let tracing = otlpEndpoint.map { ",\"tracing\":{\"otlpEndpoint\":\"\($0)\"}" } ?? ""
            let config = "{\"listener\":{\"address\":\"127.0.0.1\",\"port\":\(ports["gateway"]!)},\"admin\":{\"address\":\"127.0.0.1\",\"port\":\(adminPort)},"
                + "\"serviceEntries\":[\(entries.joined(separator: ","))],\"virtualServices\":[{\"http\":[\(routes.joined(separator: ","))]}]\(tracing)}"
            try config.write(to: dir.appendingPathComponent("gateway.json"), atomically: true, encoding: .utf8)
            try start("gateway")
        }
        for name in ["delivery", "order", "inventory", "mypage"] { try start(name) }
    }

    var viaGateway: Bool { gatewayBinary != nil }

    /// Where a request for `path` goes: the gateway, or the service that owns the path.
    func port(for path: String) -> Int {
        if viaGateway { return ports["gateway"]! }
        for (prefix, name) in [("/orders", "order"), ("/deliveries", "delivery"), ("/inventories", "inventory"), ("/mypages", "mypage")]
        where path.hasPrefix(prefix) {
            return ports[name]!
        }
        return ports["order"]!
    }

    func call(_ method: String, _ path: String, _ body: Any? = nil, headers: [String: String] = [:]) -> HTTPResult? {
        MaskShopTests.call(method, port(for: path), path, body, headers: headers)
    }

    func arguments(_ name: String) -> [String] {
        let url = { (n: String) in "http://127.0.0.1:\(self.ports[n]!)" }
        let common = ["--port", "\(ports[name]!)", "--data-dir", dir.path] + extraFlags
            + (otlpEndpoint.map { ["--otlp-endpoint", $0] } ?? [])
        switch name {
        case "gateway":
            return ["--config", dir.appendingPathComponent("gateway.json").path,
                    "--access-log", keepLogs ? dir.appendingPathComponent("gateway-access.log").path : "off"]
        case "order": return ["order"] + common + ["--delivery-url", url(viaGateway ? "gateway" : "delivery")]
        case "delivery": return ["delivery"] + common + ["--order-url", url("order")]
        case "inventory": return ["inventory"] + common + ["--delivery-url", url("delivery")]
        default: return ["mypage"] + common + ["--order-url", url("order"), "--delivery-url", url("delivery")]
        }
    }

    func start(_ name: String) throws {
        let p = Process()
        p.executableURL = name == "gateway" ? gatewayBinary! : try maskshopExecutable()
        p.arguments = arguments(name)
        if keepLogs {
            // Appended to, so a restarted service adds to its log.
            let url = logURL(name)
            if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: url)
            handle.seekToEndOfFile()
            p.standardOutput = handle
            p.standardError = handle
        } else {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        processes[name] = p
        let path = name == "gateway" ? "/ready" : "/health"
        let port = name == "gateway" ? adminPort : ports[name]!
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = MaskShopTests.call("GET", port, path), r.status == 200 { return }
            if !p.isRunning { break }
            usleep(50_000)
        }
        throw NSError(domain: "shop", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(name) did not start: \(p.arguments ?? [])"])
    }

    func logURL(_ name: String) -> URL { dir.appendingPathComponent("\(name).log") }

    /// A process's output so far (`gateway-access` for the gateway's access log); needs `keepLogs`.
    func log(_ name: String) -> String {
        (try? String(contentsOf: name == "gateway-access" ? dir.appendingPathComponent("gateway-access.log") : logURL(name),
                     encoding: .utf8)) ?? ""
    }

    func kill9(_ name: String) {
        guard let p = processes[name], p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// Polls until `check` holds (or the time runs out); returns whether it held.
    func eventually(_ seconds: Double = 15, _ check: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if check() { return true }
            usleep(100_000)
        }
        return check()
    }

    func stock(_ product: Int) -> Int? {
        (call("GET", "/inventories/\(product)")?.json as? [String: Any])?["stock"] as? Int
    }

    deinit {
        for p in processes.values where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }
}
