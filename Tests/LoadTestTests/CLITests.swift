import Foundation
import XCTest

/// Bad input to the executables: one line on stderr, a non-zero exit, no crash.
final class CLITests: XCTestCase {
    func run(_ name: String, _ args: [String]) throws -> (Int32, String) {
        let r = try runToEnd(try builtExecutable(name), args)
        return (r.status, r.err)
    }

    func testBadInputIsOneLineAndNonZero() throws {
        let cases: [(String, [String])] = [
            ("loadtest", ["--bogus"]),
            ("loadtest", ["-c", "0", "http://127.0.0.1:1/"]),
            ("loadtest", ["-t", "5X", "http://127.0.0.1:1/"]),
            ("loadtest", ["-c", "1", "-r", "1", "http://127.0.0.1:1/unreachable"]),
            ("loadtest", ["-f", "/nonexistent/urls.txt"]),
            ("loadtest", ["-x", "http://127.0.0.1:1/"]),
            ("loadtest", ["-c"]),
            ("loadtest", ["--reps=lots", "http://127.0.0.1:1/"]),
            ("loadtest", ["-R", "/nonexistent/siegerc", "http://127.0.0.1:1/"]),
            ("loadtest", ["http://127.0.0.1:1/ FETCH"]),
            ("loadtest", ["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]),
            ("gateway", ["--frobnicate"]),
            ("gateway", ["--config", "/nonexistent.json"]),
            ("gateway", ["--loop-scheduling", "fifo"]),
            ("gateway", ["--loop-nice", "-40"]),
            ("gateway", ["--loop-nice", "low"]),
            ("maskshop", ["frobnicate"]),
        ]
        for (exe, args) in cases {
            let (status, stderr) = try run(exe, args)
            XCTAssertNotEqual(status, 0, "\(exe) \(args)")
            let lines = stderr.split(separator: "\n", omittingEmptySubsequences: true)
            XCTAssertEqual(lines.count, 1, "\(exe) \(args): \(stderr)")
            XCTAssertTrue(lines.first?.hasPrefix("\(exe): ") ?? false, "\(exe) \(args): \(stderr)")
        }
    }
}

/// siege's smaller options, through the real executable against a counting upstream.
final class SiegeOptionsTests: XCTestCase {
    func loadtest() throws -> URL { try builtExecutable("loadtest") }

    func run(_ exe: URL, _ args: [String]) throws -> (Int32, String, String) { try runToEnd(exe, args) }

    /// -lFILE and -m: siege's log file, a mark line and a line per run; -q: no summary.
    func testLogMarkAndQuiet() throws {
        let server = try CountingServer()
        defer { server.close() }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("lt-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: log) }
        let (status, out, _) = try run(try loadtest(), ["-c2", "-r3", "-q", "-l\(log)", "-mfirst run", server.url])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(out, "", "quiet: no summary")
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "\(lines)")
        XCTAssertTrue(lines[0].contains("Date & Time,  Trans"))
        XCTAssertEqual(lines[1], "**** first run ****")
        let fields = lines[2].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        XCTAssertEqual(fields[1], "6", "transactions")
        XCTAssertEqual(fields[9], "0", "failed")
        XCTAssertEqual(server.requests.load(ordering: .relaxed), 6)
    }

    /// -C prints the settings in force (resource file under the command line) and sends nothing.
    func testConfigShowsTheSettingsInForce() throws {
        let rc = FileManager.default.temporaryDirectory.appendingPathComponent("rc-\(UUID().uuidString)").path
        try "concurrent = 9\ntime = 2M\nfailures = 5\n".write(toFile: rc, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: rc) }
        let (status, out, _) = try run(try loadtest(), ["--rc=\(rc)", "-c3", "-C", "http://127.0.0.1:1/"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(out.contains("concurrent users:               3"), out)
        XCTAssertTrue(out.contains("time to run:                    120.0 s"), out)
        XCTAssertTrue(out.contains("failures until abort:           5"), out)
    }

    /// -p: one request, its heads and the page.
    func testPrintShowsTheBody() throws {
        let server = try CountingServer()
        defer { server.close() }
        let (status, out, _) = try run(try loadtest(), ["-p", server.url + "x"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(out.hasPrefix("GET /x HTTP/1.1\r\n"), out)
        XCTAssertTrue(out.contains(#"{"status":"ok","qty":10000}"#), out)
        XCTAssertEqual(server.requests.load(ordering: .relaxed), 1)
    }

    /// -v colours its lines on a terminal (here a pseudo-terminal made by util-linux's `script`)
    /// and not into a pipe.
    func testVerboseIsColouredOnATerminalOnly() throws {
        let server = try CountingServer()
        defer { server.close() }
        let exe = try loadtest().path
        let (_, piped, _) = try run(try loadtest(), ["-c1", "-r1", "-v", server.url])
        XCTAssertTrue(piped.hasPrefix("HTTP/1.1 200     "), piped)
        XCTAssertFalse(piped.contains("\u{1B}["), piped)
        let (status, tty, _) = try run(URL(fileURLWithPath: "/usr/bin/script"), ["-qec", "\(exe) -c1 -r1 -v \(server.url)", "/dev/null"])
        XCTAssertEqual(status, 0, "util-linux's script makes the terminal: \(tty)")
        XCTAssertTrue(tty.hasPrefix("\u{1B}[0;34mHTTP/1.1 200     "), tty)
    }
}
