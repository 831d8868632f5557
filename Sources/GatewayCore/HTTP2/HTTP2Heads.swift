import HTTP1Wire
import NIOCore
import NIOHPACK

/// Heads between HTTP/2 and the HTTP/1.1 form the router filter works on: a request's HEADERS
/// become an HTTP/1.1 request head that the project's HeadParser then checks with the listener's
/// limits, exactly as a request read from an HTTP/1.1 connection; a response head the stream
/// wrote in HTTP/1.1 (the upstream's, or a local reply) becomes HEADERS.
enum HTTP2Heads {
    /// The HTTP/1.1 request head for a HEADERS block (RFC 9113 §8.3.1; §8.2.3 cookies).
    /// `hasBody`: the HEADERS did not end the stream; without a content-length the body is then
    /// sent upstream chunked (`chunked` in the result). Refuses what RFC 9113 §8.2 forbids
    /// (connection-specific fields, `te` other than `trailers`, uppercase names, CR/LF/NUL in a
    /// value) and a block missing `:method`, `:scheme` or `:path`. NIOHTTP2 checks the same
    /// before the block gets here; this is the gate the HTTP/1.1 bytes depend on, because a CR
    /// or LF that got through would make a header line of its own upstream.
    static func requestHead(_ headers: HPACKHeaders, hasBody: Bool, into out: inout ByteBuffer)
        throws(HTTPParseError) -> Bool
    {
        var method: String?, path: String?, authority: String?, scheme: String?, host: String?
        var cookies: [String] = []
        var hasContentLength = false
        // The request line goes in front once the pseudo-headers are known.
        var fields = ByteBufferAllocator().buffer(capacity: 256)
        for (name, value, _) in headers {
            guard isValidValue(value) else { throw HTTPParseError(400, "invalid header value") }
            if name.utf8.first == UInt8(ascii: ":") {
                func set(_ slot: inout String?) throws(HTTPParseError) {
                    guard slot == nil else { throw HTTPParseError(400, "repeated pseudo-header \(name)") }
                    slot = value
                }
                switch name {
                case ":method": try set(&method)
                case ":path": try set(&path)
                case ":authority": try set(&authority)
                case ":scheme": try set(&scheme)
                default: throw HTTPParseError(400, "unknown pseudo-header")
                }
                continue
            }
            guard !name.isEmpty, name.utf8.allSatisfy({ isTokenChar($0) && !($0 >= 65 && $0 <= 90) }) else {
                throw HTTPParseError(400, "invalid header name")
            }
            switch name {
            case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
                throw HTTPParseError(400, "connection-specific header in HTTP/2")
            case "te":
                guard value == "trailers" else { throw HTTPParseError(400, "te other than trailers") }
                continue  // a hop-by-hop field; nothing to forward
            case "host":
                try setHost(&host, value)
                continue
            case "cookie":
                cookies.append(value)
                continue
            case "content-length":
                hasContentLength = true
            default:
                break
            }
            fields.writeString(name)
            fields.writeStaticString(": ")
            fields.writeString(value)
            fields.writeStaticString("\r\n")
        }
        guard let method, let scheme, let path, !method.isEmpty, !scheme.isEmpty, !path.isEmpty else {
            throw HTTPParseError(400, "missing pseudo-header")
        }
        // Spaces would split the request line differently upstream.
        guard method.utf8.allSatisfy(isTokenChar), path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPParseError(400, "invalid request line")
        }
        out.writeString(method)
        out.writeStaticString(" ")
        out.writeString(path)
        out.writeStaticString(" HTTP/1.1\r\n")
        // RFC 9113 §8.3.1: :authority wins over a Host field; the Host field stands in without it.
        if let target = authority ?? host {
            out.writeStaticString("host: ")
            out.writeString(target)
            out.writeStaticString("\r\n")
        }
        out.writeBuffer(&fields)
        if !cookies.isEmpty {
            out.writeStaticString("cookie: ")
            out.writeString(cookies.joined(separator: "; "))
            out.writeStaticString("\r\n")
        }
        let chunked = hasBody && !hasContentLength
        if chunked { out.writeStaticString("transfer-encoding: chunked\r\n") }
        out.writeStaticString("\r\n")
        return chunked
    }

    private static func setHost(_ host: inout String?, _ value: String) throws(HTTPParseError) {
        guard host == nil else { throw HTTPParseError(400, "repeated host") }
        host = value
    }

    /// RFC 9113 §8.2.1: no CR, LF or NUL anywhere in a value, no whitespace at its ends.
    @inline(__always) static func isValidValue(_ value: String) -> Bool {
        var u = value.utf8.makeIterator()
        var first = true, last: UInt8 = 0
        while let b = u.next() {
            if b == 0 || b == 0x0A || b == 0x0D { return false }
            if first && (b == 0x20 || b == 0x09) { return false }
            first = false
            last = b
        }
        return last != 0x20 && last != 0x09
    }

    /// The HEADERS for an HTTP/1.1 response head (`bytes`, parsed as `head`): `:status`, then
    /// every end-to-end line with its name lowercased; hop-by-hop and connection-specific lines
    /// (RFC 9113 §8.2.2) stay behind.
    static func responseHeaders(_ head: MessageHead, _ bytes: ByteBuffer) -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":status", value: String(head.status))
        bytes.withUnsafeReadableBytes { b in
            var i = 0
            while i < head.length && b[i] != 0x0A { i += 1 }
            HeadWriter.forEachEndToEndLine(head, b, from: i + 1) { name, line in
                if equalsLowercase(b, name, "transfer-encoding") || equalsLowercase(b, name, "connection")
                    || equalsLowercase(b, name, "keep-alive") || equalsLowercase(b, name, "proxy-connection")
                    || equalsLowercase(b, name, "upgrade")
                {
                    return
                }
                var start = name.upperBound + 1  // past the colon
                var end = line.upperBound - 2  // before CRLF
                while start < end && (b[start] == 0x20 || b[start] == 0x09) { start += 1 }
                while end > start && (b[end - 1] == 0x20 || b[end - 1] == 0x09) { end -= 1 }
                let lower = String(unsafeUninitializedCapacity: name.count) { dst in
                    for (k, j) in name.enumerated() { dst[k] = lowercased(b[j]) }
                    return name.count
                }
                headers.add(name: lower, value: String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<end]), as: UTF8.self))
            }
        }
        return headers
    }

    // MARK: trailers

    /// A client's trailing HEADERS (a gRPC client's, say) as the end of the chunked request body
    /// upstream: the last chunk, the trailer section, the final CRLF. Checked as a head is (names
    /// lowercase tokens, values without CR/LF/NUL), fields that frame or route a message
    /// (RFC 9110 §6.5.1) and connection-specific ones refused, the section bounded as the
    /// upstream's decoder bounds it (`BodyDecoder.maxTrailerBytes`).
    static func lastChunk(trailers: HPACKHeaders, into out: inout ByteBuffer) throws(HTTPParseError) {
        let start = out.writerIndex
        out.writeStaticString("0\r\n")
        for (name, value, _) in trailers {
            guard !name.isEmpty, name.utf8.allSatisfy({ isTokenChar($0) && !($0 >= 65 && $0 <= 90) }) else {
                throw HTTPParseError(400, "invalid trailer name")
            }
            guard isValidValue(value) else { throw HTTPParseError(400, "invalid trailer value") }
            switch name {
            case "content-length", "transfer-encoding", "host", "te", "trailer", "connection", "keep-alive",
                 "proxy-connection", "upgrade":
                throw HTTPParseError(400, "\(name) in trailers")
            default:
                break
            }
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
            guard out.writerIndex - start <= BodyDecoder.maxTrailerBytes else { throw HTTPParseError(400, "trailers too large") }
        }
        out.writeStaticString("\r\n")
    }

    /// An upstream's chunked trailer section (field lines and the final CRLF, already checked by
    /// its BodyDecoder) as the HEADERS that end an HTTP/2 stream: names lowercased, values
    /// without surrounding whitespace, connection-specific fields left behind.
    static func responseTrailers(_ section: ByteBuffer) -> HPACKHeaders {
        var headers = HPACKHeaders()
        section.withUnsafeReadableBytes { b in
            var i = 0
            while i < b.count {
                var end = i
                while end < b.count && b[end] != 0x0A { end += 1 }
                // The line without its CRLF; the empty one ends the section.
                let lineEnd = end > i && b[end - 1] == 0x0D ? end - 1 : end
                defer { i = end + 1 }
                guard lineEnd > i, let colon = (i..<lineEnd).first(where: { b[$0] == UInt8(ascii: ":") }) else { continue }
                let name = i..<colon
                if equalsLowercase(b, name, "transfer-encoding") || equalsLowercase(b, name, "connection")
                    || equalsLowercase(b, name, "keep-alive") || equalsLowercase(b, name, "proxy-connection")
                    || equalsLowercase(b, name, "upgrade") || equalsLowercase(b, name, "content-length")
                {
                    continue
                }
                var vStart = colon + 1, vEnd = lineEnd
                while vStart < vEnd && (b[vStart] == 0x20 || b[vStart] == 0x09) { vStart += 1 }
                while vEnd > vStart && (b[vEnd - 1] == 0x20 || b[vEnd - 1] == 0x09) { vEnd -= 1 }
                let lower = String(unsafeUninitializedCapacity: name.count) { dst in
                    for (k, j) in name.enumerated() { dst[k] = lowercased(b[j]) }
                    return name.count
                }
                headers.add(name: lower, value: String(decoding: UnsafeRawBufferPointer(rebasing: b[vStart..<vEnd]), as: UTF8.self))
            }
        }
        return headers
    }
}

// MARK: the upstream direction (an HTTP/2 upstream: the inverse of the above)

extension HTTP2Heads {
    /// The HEADERS for the HTTP/1.1 request head the router sends upstream (`bytes`, parsed as
    /// `head`): the request line becomes `:method`, `:scheme`, `:authority` (from Host) and
    /// `:path`; every end-to-end line follows with its name lowercased. Hop-by-hop lines and
    /// `transfer-encoding` stay behind (HTTP/2 frames the body itself, RFC 9113 §8.2.2); a gRPC
    /// request gets the `te: trailers` gRPC servers require (hop-by-hop in HTTP/1.1, so the
    /// HTTP/1.1 form could not carry it).
    static func requestHeaders(_ head: MessageHead, _ bytes: ByteBuffer, scheme: String) -> HPACKHeaders {
        var headers = HPACKHeaders()
        bytes.withUnsafeReadableBytes { b in
            func text(_ r: Range<Int>) -> String { String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self) }
            headers.add(name: ":method", value: text(head.method))
            headers.add(name: ":scheme", value: scheme)
            if let host = head.host { headers.add(name: ":authority", value: text(host)) }
            headers.add(name: ":path", value: text(head.target))
            var grpc = false
            var i = 0
            while i < head.length && b[i] != 0x0A { i += 1 }
            HeadWriter.forEachEndToEndLine(head, b, from: i + 1) { name, line in
                if equalsLowercase(b, name, "transfer-encoding") || equalsLowercase(b, name, "host") { return }
                var start = name.upperBound + 1
                var end = line.upperBound - 2
                while start < end && (b[start] == 0x20 || b[start] == 0x09) { start += 1 }
                while end > start && (b[end - 1] == 0x20 || b[end - 1] == 0x09) { end -= 1 }
                let lower = String(unsafeUninitializedCapacity: name.count) { dst in
                    for (k, j) in name.enumerated() { dst[k] = lowercased(b[j]) }
                    return name.count
                }
                let value = text(start..<end)
                if lower == "content-type" && value.hasPrefix("application/grpc") { grpc = true }
                headers.add(name: lower, value: value)
            }
            if grpc { headers.add(name: "te", value: "trailers") }
        }
        return headers
    }

    /// The HTTP/1.1 status line and header lines (no blank line yet) for an upstream's response
    /// HEADERS, into `out`. The block must be what RFC 9113 §8.3.2 allows: `:status` alone among
    /// pseudo-headers, lowercase token names, no connection-specific field, no CR, LF or NUL in a
    /// value; anything else is the upstream breaking HTTP/2 (502). Returns the status.
    static func responseHead(_ headers: HPACKHeaders, into out: inout ByteBuffer) throws(HTTPParseError) -> Int {
        var status: Int?
        var lines = ByteBufferAllocator().buffer(capacity: 256)
        for (name, value, _) in headers {
            guard isValidValue(value) || value.isEmpty else { throw HTTPParseError(502, "invalid header value from upstream") }
            if name.utf8.first == UInt8(ascii: ":") {
                guard name == ":status", status == nil, value.utf8.count == 3, let code = Int(value), (100...999).contains(code)
                else { throw HTTPParseError(502, "invalid pseudo-header from upstream") }
                status = code
                continue
            }
            try checkFieldName(name)
            lines.writeString(name)
            lines.writeStaticString(": ")
            lines.writeString(value)
            lines.writeStaticString("\r\n")
        }
        guard let status else { throw HTTPParseError(502, "upstream response without :status") }
        out.writeStaticString("HTTP/1.1 ")
        out.writeString(String(status))
        out.writeStaticString(" ")
        out.writeString(reasonPhrase(status))
        out.writeStaticString("\r\n")
        out.writeBuffer(&lines)
        return status
    }

    /// An upstream's trailing HEADERS as the last chunk and trailer section of a chunked body
    /// (`0`, the fields, the blank line); the HTTP/1.1 framer then checks them as it checks an
    /// HTTP/1.1 upstream's trailers.
    static func trailerSection(_ headers: HPACKHeaders, into out: inout ByteBuffer) throws(HTTPParseError) {
        out.writeStaticString("0\r\n")
        for (name, value, _) in headers {
            guard name.utf8.first != UInt8(ascii: ":") else { throw HTTPParseError(502, "pseudo-header in upstream trailers") }
            guard isValidValue(value) || value.isEmpty else { throw HTTPParseError(502, "invalid trailer value from upstream") }
            try checkFieldName(name)
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("\r\n")
    }

    private static func checkFieldName(_ name: String) throws(HTTPParseError) {
        guard !name.isEmpty, name.utf8.allSatisfy({ isTokenChar($0) && !($0 >= 65 && $0 <= 90) }) else {
            throw HTTPParseError(502, "invalid header name from upstream")
        }
        switch name {
        case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
            throw HTTPParseError(502, "connection-specific header from an HTTP/2 upstream")
        default:
            break
        }
    }

    /// The reason phrase an HTTP/1.1 status line carries (HTTP/2 has none).
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 206: "Partial Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 409: "Conflict"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}
