import Foundation
import XCTest

/// An executable of this package, built next to the test bundle (`swift build` before `swift
/// test`); the test is skipped, saying so, when it is not there.
func builtExecutable(_ name: String) throws -> URL {
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") { dir = bundle.bundleURL.deletingLastPathComponent() }
    let url = dir.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
        throw XCTSkip("\(name) is not built next to the tests; run `swift build` before `swift test`")
    }
    return url
}

/// Runs `exe` with `args` to its end: its exit status, stdout and stderr (read side by side, so
/// neither pipe can fill up and stall the process).
func runToEnd(_ exe: URL, _ args: [String]) throws -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = exe
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    final class Collected: @unchecked Sendable {
        var data = Data()
        let done = DispatchSemaphore(value: 0)
    }
    let errBytes = Collected()
    let errHandle = err.fileHandleForReading
    Thread {
        errBytes.data = errHandle.readDataToEndOfFile()
        errBytes.done.signal()
    }.start()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    errBytes.done.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errBytes.data, as: UTF8.self))
}

/// The gateway process on one event loop (the breaker's arithmetic is then exactly the seed's
/// single sidecar worker), ports from 0, no access log; killed when released.
final class OneLoopGateway {
    let process = Process()
    let port: Int
    let adminPort: Int

    /// `threads`: other than one for tests of the loops themselves; `arguments` go last.
    init(config: URL, threads: Int = 1, arguments: [String] = []) throws {
        process.executableURL = try builtExecutable("gateway")
        process.arguments = ["--config", config.path, "--port", "0", "--admin-port", "0", "--address", "127.0.0.1",
                             "--access-log", "off", "--threads", String(threads)] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        // First line: "gateway listening on http://127.0.0.1:P admin http://127.0.0.1:A ..."
        var line = Data()
        while let b = try out.fileHandleForReading.read(upToCount: 1), !b.isEmpty, b[0] != 10 { line.append(b) }
        let ports = String(decoding: line, as: UTF8.self).split(separator: " ").compactMap { w -> Int? in
            guard w.hasPrefix("http://"), let c = w.lastIndex(of: ":") else { return nil }
            return Int(w[w.index(after: c)...])
        }
        guard ports.count == 2 else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw NSError(domain: "gateway", code: 1, userInfo: [NSLocalizedDescriptionKey: "unexpected first line: \(String(decoding: line, as: UTF8.self))"])
        }
        (port, adminPort) = (ports[0], ports[1])
    }

    deinit {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
