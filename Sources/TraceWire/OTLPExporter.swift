#if canImport(Glibc)
import Glibc
#endif
import DequeModule
import Foundation

/// Sends finished spans to an OpenTelemetry collector with OTLP/HTTP JSON (`POST /v1/traces`),
/// from a thread of its own. Callers hand spans over and never wait: the queue holds at most
/// `maxQueuedSpans`, a span that does not fit is dropped and counted, and a collector that is
/// slow, down or hostile costs the caller nothing but those drops. Each batch goes on a new
/// connection, bounded in time (`timeout` for connect, send and receive) and in what is read back.
public final class OTLPExporter: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `condition`.

    /// Where spans go: `http://host:port/path` (no TLS; the path defaults to `/v1/traces`).
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var path: String

        public init(host: String, port: Int, path: String) {
            self.host = host
            self.port = port
            self.path = path
        }

        /// A failure, with the reason, for anything but an `http://` URL with a host.
        public static func parse(_ url: String) -> Result<Endpoint, EndpointError> {
            guard url.hasPrefix("http://") else { return .failure(EndpointError("must be an http:// URL (OTLP/HTTP, no TLS)")) }
            let rest = url.dropFirst("http://".count)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = rest[..<slash]
            var path = String(rest[slash...])
            if path.isEmpty || path == "/" { path = "/v1/traces" }
            guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .failure(EndpointError("the path must be printable ASCII")) }
            var host = String(authority)
            var port = 4318  // OTLP/HTTP's default port
            if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
                guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else {
                    return .failure(EndpointError("the port must be 1...65535"))
                }
                port = p
                host = String(authority[..<colon])
            }
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "@") }) else {
                return .failure(EndpointError("needs a host"))
            }
            return .success(Endpoint(host: host, port: port, path: path))
        }

        public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }
    }

    public struct EndpointError: Error, CustomStringConvertible, Sendable {
        public var description: String
        init(_ d: String) { description = d }
    }

    public let endpoint: Endpoint
    public let serviceName: String
    /// OTLP's instrumentation scope name (which program recorded the spans).
    public let scope: String
    public let maxQueuedSpans: Int
    public let maxBatch: Int
    let timeout: Double

    private let condition = NSCondition()
    private var queue: Deque<SpanRecord> = []
    private var stopping = false
    private var finished = false
    private var dropped = 0
    private var exported = 0
    private var failedBatches = 0

    public init(endpoint: Endpoint, serviceName: String, scope: String, maxQueuedSpans: Int = 4096, maxBatch: Int = 512, timeout: Double = 2) {
        precondition(maxQueuedSpans > 0 && maxBatch > 0)
        self.endpoint = endpoint
        self.serviceName = serviceName
        self.scope = scope
        self.maxQueuedSpans = maxQueuedSpans
        self.maxBatch = maxBatch
        self.timeout = timeout
        let thread = Thread { [self] in run() }
        thread.name = "otlp-export"
        thread.start()
    }

    /// Spans dropped because the queue was full (or the exporter stopped).
    public var droppedSpans: Int { condition.lock(); defer { condition.unlock() }; return dropped }
    /// Spans a collector accepted (a 2xx answer).
    public var exportedSpans: Int { condition.lock(); defer { condition.unlock() }; return exported }
    /// Batches lost to a collector that refused them or could not be reached.
    public var failedExports: Int { condition.lock(); defer { condition.unlock() }; return failedBatches }

    /// Queues `span` if there is room; never waits for anything but the queue's lock, which
    /// the export thread holds only to take a batch.
    public func submit(_ span: SpanRecord) {
        condition.lock()
        if queue.count < maxQueuedSpans && !stopping {
            queue.append(span)
            if queue.count == 1 || queue.count >= maxBatch { condition.signal() }
        } else {
            dropped += 1
        }
        condition.unlock()
    }

    /// Moves `spans` to the queue (what fits) and leaves the array empty with its capacity.
    public func submit(contentsOf spans: inout [SpanRecord]) {
        guard !spans.isEmpty else { return }
        condition.lock()
        let room = stopping ? 0 : max(0, maxQueuedSpans - queue.count)
        let taken = min(room, spans.count)
        queue.append(contentsOf: spans[..<taken])
        dropped += spans.count - taken
        if taken > 0 { condition.signal() }
        condition.unlock()
        spans.removeAll(keepingCapacity: true)
    }

    /// Sends what is queued and ends the thread; waits at most `wait` seconds for it.
    public func shutdown(wait: Double = 2) {
        condition.lock()
        stopping = true
        condition.broadcast()
        let deadline = Date().addingTimeInterval(wait)
        while !finished && condition.wait(until: deadline) {}
        condition.unlock()
    }

    /// Spans wait at most this long for a batch to fill.
    static let batchDelay = 0.2

    private func run() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping { break }
            if queue.count < maxBatch && !stopping {
                _ = condition.wait(until: Date().addingTimeInterval(Self.batchDelay))
            }
            let n = min(maxBatch, queue.count)
            let batch = Array(queue.prefix(n))
            queue.removeFirst(n)
            condition.unlock()
            let ok = post(OTLPJSON.exportRequest(serviceName: serviceName, scope: scope, spans: batch))
            condition.lock()
            if ok { exported += batch.count } else { failedBatches += 1 }
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// One POST on a new connection; true on a 2xx status line.
    private func post(_ body: [UInt8]) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        guard getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        // Linux bounds a blocking connect by SO_SNDTIMEO.
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else { return false }
        let hostHeader = endpoint.host.contains(":") ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)"
        let head = "POST \(endpoint.path) HTTP/1.1\r\nHost: \(hostHeader)\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        guard sendAll(fd, Array(head.utf8)), sendAll(fd, body) else { return false }
        // Only the status line matters; read at most 4 KiB for it.
        var reply = [UInt8](repeating: 0, count: 4096)
        var got = 0
        while got < 12 {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, $0.count - got, 0) }
            if n <= 0 { break }
            got += n
        }
        guard got >= 12, reply[0..<5].elementsEqual("HTTP/".utf8), reply[9] == UInt8(ascii: "2") else { return false }
        return true
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }
}
