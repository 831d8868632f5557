import Atomics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An upstream written byte by byte on plain sockets (a thread per connection): for each request
/// head it reads (bodies announced by Content-Length are read too), `answer` says which bytes to
/// send back, in one write each, so a test can play an upstream that breaks HTTP/1.1.
final class ScriptedUpstream: @unchecked Sendable {
    let listenFD: Int32
    let port: Int
    let requests = ManagedAtomic(0)
    let connections = ManagedAtomic(0)
    /// Bytes received from the gateway, all connections together.
    let bytesReceived = ManagedAtomic(0)
    private let answer: @Sendable (_ head: String, _ index: Int) -> [[UInt8]]

    init(answer: @escaping @Sendable (_ head: String, _ index: Int) -> [[UInt8]]) throws {
        (listenFD, port) = try listenOnLoopback(backlog: 128)
        self.answer = answer
        Thread { [self] in
            while true {
                let c = accept(listenFD, nil, nil)
                guard c >= 0 else { return }
                connections.wrappingIncrement(ordering: .relaxed)
                Thread { [self] in serve(c) }.start()
            }
        }.start()
    }

    deinit { shutdown(listenFD, Int32(SHUT_RDWR)); close(listenFD) }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            guard let end = Self.headEnd(buffer) else {
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return }
                bytesReceived.wrappingIncrement(by: n, ordering: .relaxed)
                buffer += chunk[0..<n]
                continue
            }
            let head = String(decoding: buffer[0..<end], as: UTF8.self)
            var length = end
            if let cl = head.lowercased().components(separatedBy: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
               let n = Int(cl.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
            {
                length += n
            }
            while buffer.count < length {
                let n = recv(fd, &chunk, chunk.count, 0)
                if n <= 0 { return }
                bytesReceived.wrappingIncrement(by: n, ordering: .relaxed)
                buffer += chunk[0..<n]
            }
            buffer.removeFirst(length)
            let index = requests.loadThenWrappingIncrement(ordering: .relaxed)
            for part in answer(head, index) {
                if part.isEmpty {
                    usleep(20_000)  // an empty part: a pause between writes
                    continue
                }
                guard FlowControlTests.sendAll(fd, part) else { return }
            }
        }
    }

    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i + 4 }
        return nil
    }

    /// The request target of a head ("GET /x HTTP/1.1..." → "/x").
    static func target(_ head: String) -> String {
        let parts = head.split(separator: " ", maxSplits: 2)
        return parts.count > 1 ? String(parts[1]) : ""
    }
}

/// A gateway process's `/stats` as a dictionary.
func statsOf(_ gateway: GatewayProcess) -> [String: Int] {
    var out: [String: Int] = [:]
    for line in (gateway.admin("/stats")?.body ?? "").split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2, let v = Int(parts[1].trimmingCharacters(in: .whitespaces)) { out[String(parts[0])] = v }
    }
    return out
}

/// Resident memory of a process, in KiB (from /proc).
func residentKiB(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}
