import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// `-g`/`-p`: one request on its own connection, with the heads kept to be shown, as siege's
/// GET mode shows them.
public enum SingleRequest {
    public struct Exchange: Sendable {
        /// The request as sent (head and body).
        public var request: [UInt8]
        /// The response head as received, without the blank line.
        public var responseHead: String
        /// The response body (de-chunked).
        public var body: [UInt8]
        public var status: Int
        public var minorVersion: Int
        public var seconds: Double
    }

    /// Sends `options.targets[index]` with `Connection: close` and reads the answer to its end.
    public static func perform(_ options: LoadOptions, index: Int = 0) throws -> Exchange {
        var o = options
        o.connection = .close
        let buffer = o.encodedRequests()[index]
        let request = Array(buffer.readableBytesView)
        let t = o.targets[index]
        let started = Date()
        let fd = try connect(host: t.host, port: t.port, timeout: Double(o.timeout.nanoseconds) / 1e9)
        defer { close(fd) }
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw OptionError("cannot send to \(t.host):\(t.port): \(String(cString: strerror(errno)))") }
            sent += n
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !complete(response, head: t.method == "HEAD") {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                if response.isEmpty { throw OptionError("no answer from \(t.host):\(t.port): \(String(cString: strerror(errno)))") }
                break
            }
            response += chunk[0..<n]
        }
        let seconds = Date().timeIntervalSince(started)
        guard let end = find(response, Array("\r\n\r\n".utf8)) else {
            throw OptionError("\(t.host):\(t.port) closed the connection without a whole response head")
        }
        let head = String(decoding: response[..<end], as: UTF8.self)
        let statusLine = head.prefix { $0 != "\r" }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw OptionError("\(t.host):\(t.port) answered something that is not HTTP/1.x")
        }
        var body = Array(response[(end + 4)...])
        let lower = head.lowercased()
        if lower.contains("\r\ntransfer-encoding: chunked") {
            body = dechunk(body)
        } else if let range = lower.range(of: "\r\ncontent-length:") {
            let value = lower[range.upperBound...].prefix { $0 != "\r" }.trimmingCharacters(in: .whitespaces)
            if let n = Int(value), n < body.count { body = Array(body[..<n]) }
        }
        return Exchange(request: request, responseHead: head, body: body, status: status,
                        minorVersion: parts[0] == "HTTP/1.0" ? 0 : 1, seconds: seconds)
    }

    /// Whether `data` holds a whole response by its framing (Content-Length, chunked, or none
    /// for HEAD, 1xx, 204 and 304); a response framed by the connection's end is never complete.
    static func complete(_ data: [UInt8], head isHead: Bool) -> Bool {
        guard let end = find(data, Array("\r\n\r\n".utf8)) else { return false }
        let head = String(decoding: data[..<end], as: UTF8.self).lowercased()
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = data.count - end - 4
        if isHead || status == 204 || status == 304 || (100..<200).contains(status) { return true }
        if head.contains("\r\ntransfer-encoding: chunked") {
            return body >= 5 && (Array(data.suffix(7)) == Array("\r\n0\r\n\r\n".utf8) || Array(data[(end + 4)...]) == Array("0\r\n\r\n".utf8))
        }
        if let range = head.range(of: "\r\ncontent-length:") {
            let value = head[range.upperBound...].prefix { $0 != "\r" }.trimmingCharacters(in: .whitespaces)
            if let n = Int(value) { return body >= n }
        }
        return false
    }

    static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    static func dechunk(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < data.count {
            guard let nl = find(Array(data[i...]), [13, 10]) else { break }
            let sizeText = String(decoding: data[i..<(i + nl)], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = i + nl + 2
            out += data[start..<min(data.count, start + size)]
            i = start + size + 2
        }
        return out
    }

    /// A blocking TCP connection to host:port (names resolved with getaddrinfo).
    static func connect(host: String, port: Int, timeout: Double) throws -> CInt {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            throw OptionError("cannot resolve \(host)")
        }
        defer { freeaddrinfo(list) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var lastError = "no address"
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
                lastError = String(cString: strerror(errno))
                close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw OptionError("cannot connect to \(host):\(port): \(lastError)")
    }
}
