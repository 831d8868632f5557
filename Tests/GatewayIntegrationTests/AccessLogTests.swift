import Foundation
import NIOPosix
import XCTest

/// The access log against the real `gateway` process: a stdout nobody reads must not stall the
/// data plane, and bytes a client chose must not forge or break a log line.
final class AccessLogTests: XCTestCase {
    /// One access log line split into its fields: spaces separate them except inside quotes,
    /// where a backslash escapes the next character.
    static func fields(_ line: Substring) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false, escaped = false
        for ch in line {
            if escaped { current.append(ch); escaped = false; continue }
            if quoted && ch == "\\" { current.append(ch); escaped = true; continue }
            if ch == "\"" { quoted.toggle(); current.append(ch); continue }
            if ch == " " && !quoted {
                out.append(current)
                current = ""
                continue
            }
            current.append(ch)
        }
        out.append(current)
        return out
    }

    /// `[time] "METHOD path HTTP/1.x" status flags received sent duration upstream-ms "host" "id" "route" trace-id`
    static let fieldCount = 12

    func stat(_ gw: GatewayProcess, _ name: String) -> Int? {
        for line in (gw.admin("/stats")?.body ?? "").split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return Int(parts[1].trimmingCharacters(in: .whitespaces)) }
        }
        return nil
    }

    func testStalledStdoutDoesNotBlockRequestsAndDropsWholeLines() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        // GatewayProcess reads the first line of stdout and nothing more: the pipe (64 KiB)
        // is full after a handful of these 8 KiB lines.
        let gw = try GatewayProcess(config: configText(routes: [("/", "svc")], hostPorts: ["svc": up.port]))
        let path = "/" + String(repeating: "a", count: 8000)
        let perThread = 300, threads = 4
        let port = gw.port
        let start = Date()
        let results = concurrentRequests(threads) { _ in
            guard let c = try? RawConnection(port: port, timeout: 5) else { return nil }
            var ok = 0
            for _ in 0..<perThread {
                c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
                guard c.readResponse()?.status == 200 else { break }
                ok += 1
            }
            return RawResponse(status: ok, headers: [], body: "", closed: false)
        }
        let elapsed = Date().timeIntervalSince(start)
        let served = results.reduce(0) { $0 + ($1?.status ?? 0) }
        XCTAssertEqual(served, perThread * threads, "every request answered while stdout is stalled")
        XCTAssertLessThan(elapsed, 30, "answered promptly")
        // Each loop hands its buffered lines over at least every 250 ms: after that the count is final.
        usleep(600_000)
        let dropped = try XCTUnwrap(stat(gw, "server.access_log_dropped"), "server.access_log_dropped in /stats")
        XCTAssertGreaterThan(dropped, 0, "about 10 MB of lines cannot fit the pipe and the bounded queue")

        // Drain: on SIGTERM the gateway writes what it queued while we read the pipe to its end.
        gw.signal(SIGTERM)
        let data = gw.stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        XCTAssertEqual(gw.waitForExit(timeout: 15), 0)
        XCTAssertEqual(data.last, 10, "output ends with a whole line")
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        let logLines = lines  // GatewayProcess read the first line ("gateway listening on ...")
        XCTAssertGreaterThan(logLines.count, 0)
        var malformed = 0
        for line in logLines {
            let f = Self.fields(line)
            let whole = f.count == Self.fieldCount && line.hasPrefix("[") && f[1] == "\"GET \(path) HTTP/1.1\"" && f[2] == "200"
                && f[10] == "\"vs0.0\""
            if !whole {
                malformed += 1
                if malformed < 3 { XCTFail("not a whole line: \(line.prefix(200))...\(line.suffix(100))") }
            }
        }
        XCTAssertEqual(malformed, 0)
        XCTAssertEqual(logLines.count + dropped, perThread * threads, "each request's line was written or counted as dropped")
    }

    func testStalledStdoutHoldsUpExitOnlyForABoundedTime() throws {
        let up = try TestUpstream(group: MultiThreadedEventLoopGroup.singleton, .init(body: "ok"))
        defer { up.close() }
        let gw = try GatewayProcess(config: configText(routes: [("/", "svc")], hostPorts: ["svc": up.port]))
        // About 800 KB of lines: the pipe takes 64 KiB, the rest waits in the writer's queue.
        let c = try RawConnection(port: gw.port, timeout: 5)
        let path = "/" + String(repeating: "b", count: 8000)
        var served = 0
        for _ in 0..<100 {
            c.send("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            guard c.readResponse()?.status == 200 else { break }
            served += 1
        }
        XCTAssertEqual(served, 100)
        // Nobody ever reads: SIGTERM must still end the process, after the bounded wait for the log.
        let start = Date()
        gw.signal(SIGTERM)
        XCTAssertEqual(gw.waitForExit(timeout: 15), 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    func testClientChosenBytesAreEscapedInTheLine() throws {
        // The route answers itself (an injected abort), so no upstream's parser judges the bytes.
        let abort = #","fault":{"abort":{"httpStatus":503,"percentage":{"value":100}}}"#
        let gw = try GatewayProcess(config: configText(routes: [("/", "svc")], hostPorts: ["svc": 9], extraHTTP: abort))
        let c = try RawConnection(port: gw.port)
        // The parser lets `"` and `\` through in the target, and tabs and bytes past 0x7F in header
        // values: all of them would end a quoted field or smuggle bytes into the log.
        var request = Array("GET /x\"y\\z HTTP/1.1\r\nHost: h\r\n".utf8)
        request += Array("x-request-id: evil\" 200 - 0 0 0 0 \"forged\"\tend\\".utf8) + [0xFF] + Array("\r\n\r\n".utf8)
        c.send(request)
        XCTAssertEqual(c.readResponse()?.status, 503)
        gw.signal(SIGTERM)
        let data = gw.stdoutPipe.fileHandleForReading.readDataToEndOfFile()
        XCTAssertEqual(gw.waitForExit(timeout: 10), 0)
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n").filter { $0.contains("/x") }
        XCTAssertEqual(lines.count, 1, text)
        let line = try XCTUnwrap(lines.first)
        XCTAssertTrue(line.allSatisfy { $0.isASCII && !($0.asciiValue! < 0x20) }, "only printable ASCII: \(line)")
        let f = Self.fields(line)
        XCTAssertEqual(f.count, Self.fieldCount, "\(f)")
        guard f.count == Self.fieldCount else { return }
        XCTAssertEqual(f[1], #""GET /x\"y\\z HTTP/1.1""#)
        XCTAssertEqual(f[2], "503")
        XCTAssertEqual(f[3], "FI")
        XCTAssertEqual(f[9], #""evil\" 200 - 0 0 0 0 \"forged\"\x09end\\\xff""#)
        XCTAssertEqual(f[10], "\"vs0.0\"")
    }
}
