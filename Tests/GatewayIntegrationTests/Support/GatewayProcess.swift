import Foundation
import XCTest

/// Where `swift build` put the executables: next to the test bundle (or $GATEWAY_BIN's folder).
func builtExecutable(_ name: String) throws -> URL {
    if let override = ProcessInfo.processInfo.environment["\(name.uppercased())_BIN"] {
        return URL(fileURLWithPath: override)
    }
    var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    for candidate in [dir, URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../../.build/debug").standardized]
    {
        let url = candidate.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw XCTSkip("\(name) is not built next to the tests; run `swift build` before `swift test`")
}

/// The real `gateway` executable as a child process on ports from 0.
final class GatewayProcess {
    let process = Process()
    let configURL: URL
    private(set) var port = 0
    private(set) var adminPort = 0
    let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()

    /// `descriptorLimit`: the process's RLIMIT_NOFILE (soft and hard), set by a shell before exec.
    init(config: String, extraArguments: [String] = [], descriptorLimit: Int? = nil) throws {
        configURL = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString).json")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let gateway = try builtExecutable("gateway")
        let arguments = ["--config", configURL.path, "--port", "0", "--admin-port", "0", "--address", "127.0.0.1"]
            + extraArguments
        if let descriptorLimit {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(descriptorLimit) && exec \"$0\" \"$@\"", gateway.path] + arguments
        } else {
            process.executableURL = gateway
            process.arguments = arguments
        }
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        try process.run()
        // First line: "gateway listening on http://127.0.0.1:P admin http://127.0.0.1:A ..."
        let line = readLine(stdoutPipe.fileHandleForReading)
        let ports = line.split(separator: " ").compactMap { word -> Int? in
            guard word.hasPrefix("http://"), let colon = word.lastIndex(of: ":") else { return nil }
            return Int(word[word.index(after: colon)...])
        }
        guard ports.count == 2 else {
            process.terminate()
            throw NSError(domain: "gateway", code: 1, userInfo: [NSLocalizedDescriptionKey: "unexpected first line: \(line)"])
        }
        port = ports[0]
        adminPort = ports[1]
    }

    private func readLine(_ h: FileHandle) -> String {
        var bytes: [UInt8] = []
        while true {
            let d = h.readData(ofLength: 1)
            if d.isEmpty || d[0] == 10 { break }
            bytes.append(d[0])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func writeConfig(_ text: String) throws { try text.write(to: configURL, atomically: true, encoding: .utf8) }

    func admin(_ path: String, method: String = "GET") -> RawResponse? {
        httpRequest(port: adminPort, method: method, path: path, body: method == "POST" ? "" : nil)
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit; returns the status (nil on timeout, after which the process is killed).
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: configURL)
    }
}

func configText(routes: [(prefix: String, host: String)], hostPorts: [String: Int], extraHTTP: String = "") -> String {
    let entries = hostPorts.map { "{\"host\":\"\($0.key)\",\"endpoints\":[{\"address\":\"127.0.0.1\",\"port\":\($0.value)}]}" }
    let http = routes.map { "{\"match\":[{\"uri\":{\"prefix\":\"\($0.prefix)\"}}],\"route\":[{\"destination\":{\"host\":\"\($0.host)\"}}]\(extraHTTP)}" }
    return "{\"serviceEntries\":[\(entries.joined(separator: ","))],\"virtualServices\":[{\"http\":[\(http.joined(separator: ","))]}]}"
}
