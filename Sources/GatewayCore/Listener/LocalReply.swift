import NIOCore

/// Responses the gateway writes itself (errors, overload, rate limit, fault abort).
enum LocalReply {
    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 307: return "Temporary Redirect"
        case 308: return "Permanent Redirect"
        case 400: return "Bad Request"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 408: return "Request Timeout"
        case 413: return "Payload Too Large"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(status)"
        }
    }

    static func make(
        status: Int, body: String, close: Bool, extraHeaders: [(String, String)] = [],
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: 160 + body.utf8.count)
        out.writeStaticString("HTTP/1.1 ")
        out.writeDecimal(status)
        out.writeString(" \(reasonPhrase(status))\r\ncontent-type: text/plain\r\ncontent-length: ")
        out.writeDecimal(body.utf8.count)
        out.writeStaticString("\r\n")
        for (name, value) in extraHeaders {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        out.writeString(body)
        return out
    }

    /// A reply on a route that changes response headers (`edit`: its `headers.response` and CORS
    /// lines), or with a body of raw bytes (`directResponse`). A body gets `content-type:
    /// text/plain` as Envoy's local replies do, unless the edit removes or sets it; an empty one
    /// gets none.
    static func make(
        status: Int, body: [UInt8], close: Bool, extraHeaders: [(String, String)], edit: ResponseHeadEdit?,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var out = allocator.buffer(capacity: 160 + body.count + (edit?.lines.count ?? 0))
        out.writeStaticString("HTTP/1.1 ")
        out.writeDecimal(status)
        out.writeString(" \(reasonPhrase(status))\r\n")
        if !body.isEmpty && !(edit?.drops("content-type") ?? false) {
            out.writeStaticString("content-type: text/plain\r\n")
        }
        out.writeStaticString("content-length: ")
        out.writeDecimal(body.count)
        out.writeStaticString("\r\n")
        for (name, value) in extraHeaders where !(edit?.drops(name) ?? false) {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        if let edit { out.writeBytes(edit.lines) }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        out.writeBytes(body)
        return out
    }
}
