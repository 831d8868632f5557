import Atomics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An upstream written byte by byte on plain sockets (a thread per connection): for each request
/// head it reads (bodies announced by Content-Length are read too), `answer` says which bytes to
/// send back, in one write each, so a test can play an upstream that breaks HTTP/1.1.
final class ScriptedUpstream: Sendable {
    private let listener: LoopbackListener
    var port: Int { listener.port }
    let requests: ManagedAtomic<Int>
    let connections: ManagedAtomic<Int>
    /// Bytes received from the gateway, all connections together.
    let bytesReceived: ManagedAtomic<Int>

    init(answer: @escaping @Sendable (_ head: String, _ index: Int) -> [[UInt8]]) throws {
        let requests = ManagedAtomic(0), connections = ManagedAtomic(0), bytesReceived = ManagedAtomic(0)
        (self.requests, self.connections, self.bytesReceived) = (requests, connections, bytesReceived)
        listener = try LoopbackListener(backlog: 128) { c in
            connections.wrappingIncrement(ordering: .relaxed)
            Thread {
                Self.serve(c, answer: answer, requests: requests, bytesReceived: bytesReceived)
            }.start()
        }
    }

    private static func serve(_ fd: Int32, answer: @Sendable (_ head: String, _ index: Int) -> [[UInt8]],
                              requests: ManagedAtomic<Int>, bytesReceived: ManagedAtomic<Int>) {
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
