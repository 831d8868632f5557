import Foundation
import XCTest

/// Bad input to the executables: one line on stderr, a non-zero exit, no crash.
final class CLITests: XCTestCase {
    func run(_ name: String, _ args: [String]) throws -> (Int32, String) {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        let exe = dir.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: exe.path) else { throw XCTSkip("\(name) is not built; run `swift build` first") }
        let p = Process()
        p.executableURL = exe
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
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
