import Foundation
import XCTest
@testable import GatewayCore

/// docs/istio-fields.md checked against the decoder: every row's sample is put into a valid
/// config at the row's path; an implemented (or no-effect) field must load, a refused one must be
/// refused at its own path saying it is not supported. A field the decoder does not know at all
/// fails both ways.
final class IstioFieldTableTests: XCTestCase {
    struct Row {
        var kind: String
        var path: String
        var state: String
        var sample: String
    }

    static let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/istio-fields.md")

    /// The table rows: `| kind | `path` | state | `sample` | why |`, `\|` escaping a bar in a cell.
    static func rows() throws -> [Row] {
        let text = try String(contentsOf: docs, encoding: .utf8)
        var rows: [Row] = []
        for line in text.split(separator: "\n") where line.hasPrefix("| ") {
            let cells = line.replacingOccurrences(of: "\\|", with: "\u{1}").split(separator: "|", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\u{1}", with: "|") }
            guard cells.count == 7, ["ServiceEntry", "WorkloadEntry", "DestinationRule", "VirtualService", "Gateway"].contains(cells[1]) else { continue }
            func code(_ s: String) -> String { s.hasPrefix("`") && s.hasSuffix("`") ? String(s.dropFirst().dropLast()) : s }
            rows.append(Row(kind: cells[1], path: code(cells[2]), state: cells[3], sample: code(cells[4])))
        }
        return rows
    }

    /// A config every row is injected into: a host with a port, labelled endpoints, a subset, a route.
    static func base() -> [String: Any] {
        [
            "serviceEntries": [[
                "hosts": ["reviews"], "ports": [["name": "http", "number": 9080]],
                "endpoints": [["address": "127.0.0.1", "ports": ["http": 9081], "labels": ["version": "v1"]]],
            ]],
            "workloadEntries": [["address": "10.0.0.9", "labels": ["app": "w"]]],
            "destinationRules": [["host": "reviews", "subsets": [["name": "v1", "labels": ["version": "v1"]]]]],
            "virtualServices": [["hosts": ["reviews"], "http": [["route": [["destination": ["host": "reviews"]]]]]]],
        ]
    }

    /// What a parent created on the way to a field holds, so the field is read in a valid object.
    static func scaffold(_ key: String) -> Any {
        switch key {
        case "retries": return ["attempts": 1]
        case "delay": return ["fixedDelay": "1s"]
        case "abort": return ["httpStatus": 503]
        case "portLevelSettings": return [["port": ["number": 9080]]]
        case "mirrors": return [["destination": ["host": "reviews"]]]
        case "mirror": return ["host": "reviews"]
        default: return key.hasSuffix("[]") ? [[String: Any]()] : [String: Any]()
        }
    }

    static func set(_ value: Any, at path: ArraySlice<String>, in node: Any) -> Any {
        guard let first = path.first else { return value }
        let isArray = first.hasSuffix("[]")
        let key = isArray ? String(first.dropLast(2)) : first
        var dict = node as? [String: Any] ?? [:]
        if path.count == 1 {
            dict[key] = value
            return dict
        }
        if isArray {
            var array = dict[key] as? [Any] ?? (scaffold(key) as? [Any] ?? [[String: Any]()])
            if array.isEmpty { array = [[String: Any]()] }
            array[0] = set(value, at: path.dropFirst(), in: array[0])
            dict[key] = array
        } else {
            dict[key] = set(value, at: path.dropFirst(), in: dict[key] ?? scaffold(key))
        }
        return dict
    }

    /// The config for `row`, and the JSON path the decoder names for its field.
    static func config(for row: Row) throws -> (bytes: [UInt8], fieldPath: String) {
        let section = ["ServiceEntry": "serviceEntries", "WorkloadEntry": "workloadEntries",
                       "DestinationRule": "destinationRules", "VirtualService": "virtualServices", "Gateway": "gateways"][row.kind]!
        var root = base()
        if row.kind == "Gateway" {
            // A plaintext server; one whose TLS settings the row sets speaks HTTPS with a real
            // certificate (MUTUAL when the row sets the client CA).
            var server: [String: Any] = ["port": ["number": 8081, "protocol": "HTTP"], "hosts": ["*"]]
            if row.path.hasPrefix("servers[].tls"), row.path != "servers[].tls.httpsRedirect" {
                server["port"] = ["number": 8443, "protocol": "HTTPS"]
                server["tls"] = ["mode": row.path.hasSuffix("caCertificates") ? "MUTUAL" : "SIMPLE",
                                 "serverCertificate": "@CERT", "privateKey": "@KEY"]
                    .merging(row.path.hasSuffix("caCertificates") ? ["caCertificates": "@CA"] : [:]) { a, _ in a }
            }
            root["gateways"] = [["servers": [server]]]
        }
        var object = (root[section] as! [Any])[0] as! [String: Any]
        // Fields that replace a sibling: a redirect or direct response has no route, a
        // workloadSelector no endpoints.
        if row.kind == "VirtualService", ["http[].redirect", "http[].directResponse", "http[].delegate"].contains(where: row.path.hasPrefix) {
            var http = object["http"] as! [[String: Any]]
            http[0]["route"] = nil
            object["http"] = http
        }
        if row.kind == "ServiceEntry" && row.path.hasPrefix("workloadSelector") { object["endpoints"] = nil }
        // A share of mirrored requests needs the mirror it applies to.
        if row.kind == "VirtualService" && row.path.hasPrefix("http[].mirrorPercent") {
            var http = object["http"] as! [[String: Any]]
            http[0]["mirror"] = ["host": "reviews"]
            object["http"] = http
        }
        let value = try JSONSerialization.jsonObject(with: Data(row.sample.utf8), options: [.fragmentsAllowed])
        let components = row.path.split(separator: ".").map(String.init)
        object = set(value, at: ArraySlice(components), in: object) as! [String: Any]
        // Fields that only mean something beside another: the other goes in too (a hash needs
        // its key; the local-origin threshold needs the split).
        if let hash = components.firstIndex(of: "consistentHash"), ["ringHash", "maglev", "minimumRingSize"].contains(components[hash + 1 ..< components.count].first ?? "") {
            object = set("x-user", at: ArraySlice(components[...hash] + ["httpHeaderName"]), in: object) as! [String: Any]
        }
        if components.last == "consecutiveLocalOriginFailures" {
            object = set(true, at: ArraySlice(components.dropLast() + ["splitExternalLocalOriginErrors"]), in: object) as! [String: Any]
        }
        root[section] = [object]
        // Certificate files: `@CERT`, `@KEY`, `@CA` name real ones made for the test.
        let files = try TLSFixture.shared()
        let text = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
            .replacingOccurrences(of: "@CERT", with: files.certificate).replacingOccurrences(of: "@KEY", with: files.key)
            .replacingOccurrences(of: "@CA", with: files.ca)
        let bytes = Array(text.utf8)
        return (bytes, "\(section)[0]." + row.path.replacingOccurrences(of: "[]", with: "[0]"))
    }

    func testEveryFieldInTheTableIsImplementedOrRefusedAsItSays() throws {
        let rows = try Self.rows()
        XCTAssertGreaterThan(rows.count, 150, "the table lists Istio's fields")
        var seen: Set<String> = []
        for row in rows {
            XCTAssertTrue(seen.insert("\(row.kind) \(row.path)").inserted, "\(row.kind) \(row.path) is listed twice")
            let (bytes, fieldPath) = try Self.config(for: row)
            var failure: ConfigError? = nil
            do { _ = try ConfigLoader.decode(bytes) } catch let e as ConfigError { failure = e }
            let where_ = "\(row.kind) \(row.path) = \(row.sample)"
            switch row.state {
            case "implemented", "no effect":
                if let failure {
                    // Only a sibling the sample left out may be missing; nothing about the field itself.
                    XCTAssertFalse(failure.path == fieldPath || failure.path.hasPrefix(fieldPath + ".") || failure.path.hasPrefix(fieldPath + "["),
                                   "\(where_): listed as \(row.state) but refused: \(failure)")
                    XCTAssertFalse(failure.reason.contains("unknown field") || failure.reason.contains("not supported"),
                                   "\(where_): listed as \(row.state) but refused: \(failure)")
                }
            case "refused":
                guard let failure else { XCTFail("\(where_): listed as refused but the config loads"); continue }
                // At the field, inside it, or at a refused parent that holds it.
                XCTAssertTrue(failure.path == fieldPath || failure.path.hasPrefix(fieldPath + ".") || fieldPath.hasPrefix(failure.path + "."),
                              "\(where_): refused at another path: \(failure)")
                XCTAssertTrue(failure.reason.contains("not supported"), "\(where_): refused without saying so: \(failure)")
            default:
                XCTFail("\(where_): unknown state '\(row.state)'")
            }
        }
    }

    /// config/schema.json describes every field that loads, so editors offer what the gateway reads.
    func testSchemaCoversEveryFieldThatLoads() throws {
        let url = Self.docs.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("config/schema.json")
        let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func resolve(_ node: [String: Any]) -> [String: Any] {
            guard let ref = node["$ref"] as? String else { return node }
            var target: Any = schema
            for part in ref.dropFirst(2).split(separator: "/") { target = (target as! [String: Any])[String(part)]! }
            return resolve(target as! [String: Any])
        }
        for row in try Self.rows() where row.state != "refused" {
            var node = resolve((schema["$defs"] as! [String: Any])[row.kind] as! [String: Any])
            for part in row.path.split(separator: ".") {
                let isArray = part.hasSuffix("[]")
                let key = isArray ? String(part.dropLast(2)) : String(part)
                guard let child = (node["properties"] as? [String: Any])?[key] as? [String: Any] else {
                    XCTFail("config/schema.json has no \(row.kind) \(row.path) (at '\(key)')")
                    break
                }
                node = resolve(child)
                if isArray { node = resolve(node["items"] as? [String: Any] ?? [:]) }
            }
        }
    }
}

/// A CA and a certificate it signed, made with the `openssl` CLI once per test run.
enum TLSFixture {
    struct Files {
        var certificate: String
        var key: String
        var ca: String
        /// A key of no certificate here.
        var otherKey: String
    }
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: Files?

    static func shared() throws -> Files {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-fixture-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(dir)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fixture-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=reviews.example 2>/dev/null
            printf 'subjectAltName=DNS:reviews.example\\n' > ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext 2>/dev/null
            openssl genrsa -out other.key 2048 2>/dev/null
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("openssl could not make test certificates") }
        let files = Files(certificate: dir + "/server.pem", key: dir + "/server.key", ca: dir + "/ca.pem", otherKey: dir + "/other.key")
        made = files
        return files
    }
}
