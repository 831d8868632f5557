import HTTP1Wire
import NIOCore
import NIOHPACK

/// gRPC as a proxy sees it (grpc/doc/PROTOCOL-HTTP2.md), with Envoy's rules: which requests are
/// gRPC, the status a gateway's own error becomes, `grpc-timeout`, `grpc-status`. Only requests
/// on HTTP/2 streams are taken for gRPC (gRPC needs HTTP/2), so an HTTP/1.1 request never pays
/// for any of this.
enum GRPC {
    /// Envoy's `Grpc::Common::hasGrpcContentType`: `application/grpc`, or it followed by `+` (a
    /// message format) or `;` (parameters). `application/grpc-web` is not gRPC.
    static func isGRPC(contentType: String) -> Bool {
        let u = contentType.utf8
        let prefix = "application/grpc".utf8
        guard u.count >= prefix.count, u.starts(with: prefix) else { return false }
        guard u.count > prefix.count else { return true }
        let next = u[u.index(u.startIndex, offsetBy: prefix.count)]
        return next == UInt8(ascii: "+") || next == UInt8(ascii: ";")
    }

    static func isGRPC(_ headers: HPACKHeaders) -> Bool {
        guard let type = headers.first(name: "content-type") else { return false }
        return isGRPC(contentType: type)
    }

    /// Well-known status codes the gateway gives itself.
    static let deadlineExceeded = 4
    static let unavailable = 14

    /// Envoy's `Grpc::Utility::httpToGrpcStatus` (the gRPC HTTP-to-status mapping): the status
    /// of a call the gateway answers itself with `httpStatus`.
    static func status(forHTTP httpStatus: Int) -> Int {
        switch httpStatus {
        case 400: return 13  // INTERNAL
        case 401: return 16  // UNAUTHENTICATED
        case 403: return 7  // PERMISSION_DENIED
        case 404: return 12  // UNIMPLEMENTED
        case 429, 502, 503, 504: return unavailable
        default: return 2  // UNKNOWN
        }
    }

    /// A `grpc-status` value: decimal digits (at most 9, so a hostile value cannot overflow).
    static func parseStatus<S: Collection<UInt8>>(_ value: S) -> Int? {
        guard !value.isEmpty, value.count <= 9 else { return nil }
        var n = 0
        for b in value {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            n = n * 10 + Int(b - 0x30)
        }
        return n
    }

    /// The `grpc-status` line of an HTTP/1.1 response head (a trailers-only answer), if any.
    static func status(_ head: MessageHead, _ b: UnsafeRawBufferPointer) -> Int? {
        head.value(of: "grpc-status", in: b).flatMap { parseStatus($0.utf8) }
    }

    /// `grpc-timeout` (PROTOCOL-HTTP2.md: at most 8 digits, then H, M, S, m, u or n); nil when
    /// absent, malformed or zero, which Envoy treats alike (the route's timeout applies).
    static func timeout(_ value: String) -> TimeAmount? {
        let u = Array(value.utf8)
        guard u.count >= 2, u.count <= 9, let unit = u.last else { return nil }
        var n: Int64 = 0
        for b in u.dropLast() {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            n = n * 10 + Int64(b - 0x30)
        }
        guard n > 0 else { return nil }
        switch unit {
        case UInt8(ascii: "H"): return .hours(n)
        case UInt8(ascii: "M"): return .minutes(n)
        case UInt8(ascii: "S"): return .seconds(n)
        case UInt8(ascii: "m"): return .milliseconds(n)
        case UInt8(ascii: "u"): return .microseconds(n)
        case UInt8(ascii: "n"): return .nanoseconds(n)
        default: return nil
        }
    }

    /// `grpc-message` (PROTOCOL-HTTP2.md): printable ASCII but `%` as is, every other byte of
    /// the UTF-8 text percent-encoded.
    static func percentEncoded(_ message: String) -> String {
        var out = ""
        out.reserveCapacity(message.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in message.utf8 {
            if b >= 0x20 && b <= 0x7E && b != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0xF)]))
            }
        }
        return out
    }

    /// The trailers-only answer (HEADERS with END_STREAM) a gateway gives a gRPC call in place
    /// of an HTTP error, as Envoy's `sendLocalReply` does for a gRPC request: `:status 200`,
    /// `content-type: application/grpc`, the status and the reply's text as `grpc-message`.
    /// `headers` (x-envoy-overloaded, retry-after...) go along; a `grpc-status` among them is the
    /// status chosen by the caller (DEADLINE_EXCEEDED for a call past its duration).
    static func localReply(httpStatus: Int, message: String, headers: [(String, String)]) -> (HPACKHeaders, Int) {
        var status = status(forHTTP: httpStatus)
        var out = HPACKHeaders()
        out.add(name: ":status", value: "200")
        out.add(name: "content-type", value: "application/grpc")
        var extra: [(String, String)] = []
        for (name, value) in headers {
            let lower = name.lowercased()
            if lower == "grpc-status" {
                status = parseStatus(value.utf8) ?? status
            } else if lower != "content-type" && lower != "content-length" && lower != "grpc-message" {
                extra.append((lower, value))
            }
        }
        out.add(name: "grpc-status", value: String(status))
        if !message.isEmpty { out.add(name: "grpc-message", value: percentEncoded(message)) }
        for (name, value) in extra { out.add(name: name, value: value) }
        return (out, status)
    }
}
