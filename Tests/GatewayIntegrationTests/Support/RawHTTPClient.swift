import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking socket client that sends exact bytes (malformed ones too) and reads one response.
struct RawResponse {
    var status: Int
    var headers: [(String, String)]
    var body: String
    var closed: Bool
    /// The status line as it came (its version, too).
    var statusLine = ""

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

final class RawConnection {
    let fd: Int32
    private var buffer: [UInt8] = []

    /// `source`: the loopback address to connect from (any of 127.0.0.0/8), so one test can be
    /// several clients.
    init(port: Int, timeout: Double = 10, source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                close(fd)
                throw NSError(domain: "bind", code: Int(errno))
            }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw NSError(domain: "connect", code: Int(errno))
        }
    }

    deinit { close(fd) }

    func send(_ s: String) { send(Array(s.utf8)) }
    func send(_ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads more bytes; false on EOF, error or timeout.
    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// Reads until `marker` has arrived (it stays buffered for `readResponse`); false on EOF or timeout.
    func waitFor(_ marker: String) -> Bool {
        let m = Array(marker.utf8)
        while true {
            if buffer.count >= m.count, (0...(buffer.count - m.count)).contains(where: { buffer[$0..<($0 + m.count)].elementsEqual(m) }) {
                return true
            }
            if !fill() { return false }
        }
    }

    /// Reads one response (Content-Length or chunked or until close). nil if the connection
    /// closed (or timed out) before a response head.
    func readResponse() -> RawResponse? {
        var headEnd: Int? = nil
        while headEnd == nil {
            if let r = findCRLFCRLF() { headEnd = r; break }
            if !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ")
        let status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        let headers = lines.compactMap { line -> (String, String)? in
            guard let c = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<c]), line[line.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
        var response = RawResponse(status: status, headers: headers, body: "", closed: false, statusLine: statusLine)
        if let cl = response.header("content-length").flatMap(Int.init) {
            while buffer.count < cl { if !fill() { response.closed = true; break } }
            let n = min(cl, buffer.count)
            response.body = String(decoding: buffer[0..<n], as: UTF8.self)
            buffer.removeFirst(n)
        } else if response.header("transfer-encoding")?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while true {
                while findCRLF() == nil { if !fill() { response.closed = true; return response } }
                let lineEnd = findCRLF()!
                let size = Int(String(decoding: buffer[0..<lineEnd], as: UTF8.self), radix: 16) ?? 0
                buffer.removeFirst(lineEnd + 2)
                while buffer.count < size + 2 { if !fill() { response.closed = true; return response } }
                body += buffer[0..<size]
                buffer.removeFirst(size + 2)
                if size == 0 { break }
            }
            response.body = String(decoding: body, as: UTF8.self)
        } else if status >= 200 && status != 204 && status != 304 {
            while fill() {}
            response.body = String(decoding: buffer, as: UTF8.self)
            buffer.removeAll()
            response.closed = true
        }
        return response
    }

    /// True when the peer closed (EOF, or a reset because it left our bytes unread) within the
    /// receive timeout; false when the connection stayed open.
    func isClosedByPeer() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 1024)
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    private func findCRLFCRLF() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func findCRLF() -> Int? {
        guard buffer.count >= 2 else { return nil }
        for i in 0...(buffer.count - 2) where buffer[i] == 13 && buffer[i + 1] == 10 { return i }
        return nil
    }
}

/// A plain listening socket on 127.0.0.1 with a port from 0, for upstreams written byte by byte.
func listenOnLoopback(backlog: Int32 = 8) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard ok else {
        close(fd)
        throw NSError(domain: "bind", code: Int(errno))
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// One request on a new connection.
func httpRequest(port: Int, method: String = "GET", path: String, headers: [String: String] = [:], body: String? = nil,
                 timeout: Double = 10) -> RawResponse? {
    guard let c = try? RawConnection(port: port, timeout: timeout) else { return nil }
    var req = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
    for (k, v) in headers { req += "\(k): \(v)\r\n" }
    if let body { req += "Content-Length: \(body.utf8.count)\r\n" }
    req += "\r\n"
    if let body { req += body }
    c.send(req)
    return c.readResponse()
}

/// Runs `n` requests at once, each on its own thread and connection (a thread pool would
/// serialise them on this 2-core machine).
func concurrentRequests(_ n: Int, _ make: @escaping @Sendable (Int) -> RawResponse?) -> [RawResponse?] {
    final class Box: @unchecked Sendable {
        var results: [RawResponse?]
        let lock = NSLock()
        init(_ n: Int) { results = Array(repeating: nil, count: n) }
    }
    let box = Box(n)
    let group = DispatchGroup()
    for i in 0..<n {
        group.enter()
        let t = Thread {
            let r = make(i)
            box.lock.lock()
            box.results[i] = r
            box.lock.unlock()
            group.leave()
        }
        t.start()
    }
    group.wait()
    return box.results
}
