import NIOCore

/// A client's IP address as text (X-Forwarded-For, the per-client rate limit, source-IP hashing),
/// made once per connection. IPv4 is formatted here: NIO's `ipAddress` goes through `inet_ntop`,
/// whose `sprintf` costs more than the rest of admitting a connection, and a dotted quad fits
/// Swift's inline string storage (15 bytes), so the text takes no allocation either.
enum ClientAddressText {
    static func of(_ address: SocketAddress?) -> String {
        switch address {
        case .v4(let v4):
            return dottedQuad(UInt32(bigEndian: v4.address.sin_addr.s_addr))
        case .some(let other):
            return other.ipAddress ?? "unknown"
        case .none:
            return "unknown"
        }
    }

    /// `a.b.c.d` of an address in host byte order.
    static func dottedQuad(_ ip: UInt32) -> String {
        String(unsafeUninitializedCapacity: 15) { out in
            var n = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                let octet = Int((ip >> UInt32(shift)) & 0xFF)
                if octet >= 100 { out[n] = UInt8(ascii: "0") + UInt8(octet / 100); n += 1 }
                if octet >= 10 { out[n] = UInt8(ascii: "0") + UInt8(octet / 10 % 10); n += 1 }
                out[n] = UInt8(ascii: "0") + UInt8(octet % 10); n += 1
                if shift != 0 { out[n] = UInt8(ascii: "."); n += 1 }
            }
            assert(n <= 15, "a dotted quad is at most 15 bytes")
            return n
        }
    }
}
