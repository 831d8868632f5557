#if os(Linux)
import Glibc
#endif
import NIOCore

/// A TCP socket's descriptor, so that bytes can go out with one `send(2)` instead of through NIO's
/// pending-write queue, promise and flush (see `DirectWriter`). NIO keeps owning the socket: it
/// reads, closes, and writes whatever a direct send could not write at once.
///
/// On platforms other than Linux every function here declines, and NIO does all the writing.
public enum DirectSocket {
    public enum Connect {
        /// A connected, non-blocking socket; hand it to `ClientBootstrap.withConnectedSocket`.
        case connected(CInt)
        /// The peer refused or the socket could not be made: a failure, as from NIO's connect.
        case failed
        /// The handshake did not finish at once (a host across a network): let NIO connect.
        case notImmediate
    }

    /// 127.0.0.0/8 or ::1: where `connect` finishes before it returns, so a socket connected
    /// with `connect(to:)` never needs a second try through NIO.
    public static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let a): return UInt32(bigEndian: a.address.sin_addr.s_addr) >> 24 == 127
        case .v6(let a):
            var loopback = in6addr_loopback
            var actual = a.address.sin6_addr
            return memcmp(&actual, &loopback, MemoryLayout<in6_addr>.size) == 0
        default: return false
        }
    }

    /// Connects without blocking. Over loopback the handshake is done by the time `connect`
    /// returns `EINPROGRESS`, and `poll` with no wait confirms it.
    public static func connect(to address: SocketAddress) -> Connect {
        #if os(Linux)
        let family: CInt
        switch address {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        default: return .notImmediate
        }
        let fd = socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failed }
        var one: CInt = 1
        // As ClientBootstrap does by default: requests are small and must not wait for Nagle.
        _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
        let rc: CInt
        switch address {
        case .v4(let a):
            var sa = a.address
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(let a):
            var sa = a.address
            rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        default:
            rc = -1
        }
        if rc == 0 { return .connected(fd) }
        guard errno == EINPROGRESS else {
            close(fd)
            return .failed
        }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let ready = poll(&p, 1, 0)
        if ready == 1 && p.revents & Int16(POLLERR | POLLHUP) == 0 && p.revents & Int16(POLLOUT) != 0 {
            return .connected(fd)
        }
        close(fd)
        return ready == 1 ? .failed : .notImmediate
        #else
        return .notImmediate
        #endif
    }

    /// Sends what it can of `bytes` at once. Returns the number of bytes sent, 0 when nothing could
    /// be (a full socket buffer, or an error that NIO's own write will then meet and report).
    @inline(__always) public static func send(_ fd: CInt, _ bytes: ByteBuffer) -> Int {
        #if os(Linux)
        let n = bytes.withUnsafeReadableBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
        return max(n, 0)
        #else
        return 0
        #endif
    }
}
