/// A W3C Trace Context `traceparent` value (https://www.w3.org/TR/trace-context/ §3.2):
/// `00-<trace-id: 32 hex>-<parent-id: 16 hex>-<trace-flags: 2 hex>`, shared by the gateway (on raw
/// header bytes) and the shop's services. Ids are kept as integers, so carrying one through a
/// request costs no allocation; they become text only when written.
public struct TraceParent: Equatable, Sendable {
    /// The trace id's high and low 64 bits; never both zero.
    public var traceIDHigh: UInt64
    public var traceIDLow: UInt64
    /// The span of whoever sends this value (the receiver's parent); never zero.
    public var spanID: UInt64
    /// Bit 0 is `sampled`; version 00 defines no other flag, so the others are not forwarded.
    public var flags: UInt8

    /// Bytes of a version 00 value.
    public static let length = 55
    /// Bytes of `tracestate` forwarded at most: W3C §3.3.1.5 asks vendors to propagate at least
    /// 512; a longer one (or one split over several lines) is dropped rather than kept in part.
    public static let maxTraceStateLength = 512

    @inlinable
    public init(traceIDHigh: UInt64, traceIDLow: UInt64, spanID: UInt64, sampled: Bool) {
        precondition(traceIDHigh | traceIDLow != 0 && spanID != 0, "W3C trace and span ids are never all zero")
        self.traceIDHigh = traceIDHigh
        self.traceIDLow = traceIDLow
        self.spanID = spanID
        flags = sampled ? 1 : 0
    }

    @inlinable public var sampled: Bool { flags & 1 != 0 }

    /// A new trace: random 128-bit trace id and 64-bit span id, neither zero.
    @inlinable @inline(__always)
    public static func newTrace<G: RandomNumberGenerator>(sampled: Bool, using random: inout G) -> TraceParent {
        var high = random.next() as UInt64, low = random.next() as UInt64
        while high | low == 0 { high = random.next(); low = random.next() }
        return TraceParent(traceIDHigh: high, traceIDLow: low, spanID: newSpanID(using: &random), sampled: sampled)
    }

    /// The same trace with a new span of the caller's own (what it sends on to the next hop).
    @inlinable @inline(__always)
    public func child<G: RandomNumberGenerator>(sampled: Bool, using random: inout G) -> TraceParent {
        TraceParent(traceIDHigh: traceIDHigh, traceIDLow: traceIDLow, spanID: Self.newSpanID(using: &random), sampled: sampled)
    }

    @inlinable @inline(__always)
    public static func newSpanID<G: RandomNumberGenerator>(using random: inout G) -> UInt64 {
        var id = random.next() as UInt64
        while id == 0 { id = random.next() }
        return id
    }

    // MARK: parsing

    /// Parses a header value strictly (§3.2.2): lowercase hex only, the exact separators, trace id
    /// and parent id not all zeros, version `ff` refused. A version above 00 is read as 00 when its
    /// first 55 bytes are a valid 00 value followed by the end or a `-` (§3.2.4, forward
    /// compatibility). Anything else is nil: the caller treats the header as absent and starts a
    /// new trace (§3.2.2.7), since the value came from a client and proves nothing.
    public static func parse(_ b: UnsafeRawBufferPointer) -> TraceParent? {
        guard b.count >= length, b[2] == 0x2D, b[35] == 0x2D, b[52] == 0x2D else { return nil }
        guard let version = hexByte(b[0], b[1]), version != 0xFF else { return nil }
        if version == 0 {
            guard b.count == length else { return nil }
        } else if b.count > length && b[length] != 0x2D {
            return nil
        }
        guard let high = hex64(b, 3), let low = hex64(b, 19), let span = hex64(b, 36), let flags = hexByte(b[53], b[54]),
              high | low != 0, span != 0
        else { return nil }
        var p = TraceParent(traceIDHigh: high, traceIDLow: low, spanID: span, sampled: false)
        p.flags = flags & 1
        return p
    }

    public static func parse(_ s: String) -> TraceParent? {
        var s = s
        return s.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always) static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c &- 0x30
        case 0x61...0x66: return c &- 0x61 &+ 10
        default: return nil  // upper case is invalid in traceparent (§3.2.2.2)
        }
    }

    @inline(__always) static func hexByte(_ a: UInt8, _ b: UInt8) -> UInt8? {
        guard let h = nibble(a), let l = nibble(b) else { return nil }
        return h << 4 | l
    }

    @inline(__always) static func hex64(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64? {
        var v: UInt64 = 0
        for i in at..<(at + 16) {
            guard let n = nibble(b[i]) else { return nil }
            v = v << 4 | UInt64(n)
        }
        return v
    }

    // MARK: writing

    /// Writes the 55-byte version 00 value at `p`.
    @inlinable @inline(__always)
    public func write(to p: UnsafeMutableRawBufferPointer) {
        precondition(p.count >= Self.length)
        p[0] = 0x30; p[1] = 0x30; p[2] = 0x2D
        Self.writeHex(traceIDHigh, to: p, at: 3)
        Self.writeHex(traceIDLow, to: p, at: 19)
        p[35] = 0x2D
        Self.writeHex(spanID, to: p, at: 36)
        p[52] = 0x2D
        p[53] = 0x30
        p[54] = sampled ? 0x31 : 0x30
    }

    /// Writes `v` as 16 lowercase hex digits at `p[at...]`: two 8-byte stores (a nibble per
    /// byte, spread and turned into ASCII in registers), a few ns instead of 16 table lookups.
    @inlinable @inline(__always)
    public static func writeHex(_ v: UInt64, to p: UnsafeMutableRawBufferPointer, at: Int) {
        precondition(at >= 0 && at + 16 <= p.count)
        p.storeBytes(of: hexASCII(UInt32(truncatingIfNeeded: v >> 32)).bigEndian, toByteOffset: at, as: UInt64.self)
        p.storeBytes(of: hexASCII(UInt32(truncatingIfNeeded: v)).bigEndian, toByteOffset: at + 8, as: UInt64.self)
    }

    /// The 8 hex digits of `x`, most significant in the high byte.
    @inlinable @inline(__always)
    static func hexASCII(_ x: UInt32) -> UInt64 {
        var v = UInt64(x)
        v = (v & 0xFFFF_0000) << 16 | (v & 0x0000_FFFF)
        v = (v & 0x0000_FF00_0000_FF00) << 8 | (v & 0x0000_00FF_0000_00FF)
        v = (v & 0x00F0_00F0_00F0_00F0) << 4 | (v & 0x000F_000F_000F_000F)
        // 1 in each byte whose nibble is 10 or more: those go to 'a'...'f' rather than ':'...'?'.
        let letters = ((v &+ 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101
        return v &+ 0x3030_3030_3030_3030 &+ letters &* 0x27
    }

    public var headerValue: String {
        String(unsafeUninitializedCapacity: Self.length) { p in
            write(to: UnsafeMutableRawBufferPointer(p))
            return Self.length
        }
    }

    /// The trace id as 32 lowercase hex digits (the access log's and OTLP's form).
    public var traceIDHex: String { Self.hex(traceIDHigh, traceIDLow) }
    public var spanIDHex: String { Self.hex(spanID) }

    public static func hex(_ high: UInt64, _ low: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { p in
            writeHex(high, to: UnsafeMutableRawBufferPointer(p), at: 0)
            writeHex(low, to: UnsafeMutableRawBufferPointer(p), at: 16)
            return 32
        }
    }

    public static func hex(_ v: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { p in
            writeHex(v, to: UnsafeMutableRawBufferPointer(p), at: 0)
            return 16
        }
    }
}
