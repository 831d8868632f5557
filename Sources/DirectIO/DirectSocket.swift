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

    /// The descriptor of a socket channel NIO made (an accepted or NIO-connected one), or nil.
    /// NIO does not publish it, so it is read from the channel's stored properties by reflection,
    /// once per connection, and only trusted when the kernel confirms that this descriptor is a
    /// socket with exactly the channel's local and remote addresses. Anything else (another kind
    /// of channel, a NIO that stores it differently): nil, and NIO writes as usual.
    public static func descriptor(of channel: Channel) -> CInt? {
        #if os(Linux)
        guard let local = channel.localAddress, let remote = channel.remoteAddress,
            let socket = storedProperty("socket", of: channel),
            let fd = storedProperty("descriptor", of: socket) as? CInt, fd >= 0,
            matches(fd, local, getsockname), matches(fd, remote, getpeername)
        else { return nil }
        return fd
        #else
        return nil
        #endif
    }

    private static func storedProperty(_ name: String, of subject: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: subject)
        while let m = mirror {
            if let found = m.children.first(where: { $0.label == name }) { return found.value }
            mirror = m.superclassMirror
        }
        return nil
    }

    #if os(Linux)
    private static func matches(
        _ fd: CInt, _ expected: SocketAddress,
        _ query: (CInt, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { query(fd, $0, &length) }
        }
        guard rc == 0 else { return false }
        let family = storage.ss_family
        return withUnsafeBytes(of: &storage) { actual in
            switch expected {
            case .v4(let a):
                var sa = a.address
                return length == MemoryLayout<sockaddr_in>.size && family == sa_family_t(AF_INET)
                    && withUnsafeBytes(of: &sa) { sameAddress(actual, $0, port: 2, ip: 4, ipLength: 4) }
            case .v6(let a):
                var sa = a.address
                return length == MemoryLayout<sockaddr_in6>.size && family == sa_family_t(AF_INET6)
                    && withUnsafeBytes(of: &sa) { sameAddress(actual, $0, port: 2, ip: 8, ipLength: 16) }
            default:
                return false
            }
        }
    }

    /// Compares the port and IP bytes of two sockaddr_in(6) (their padding may differ).
    private static func sameAddress(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, port: Int, ip: Int, ipLength: Int) -> Bool {
        a[port] == b[port] && a[port + 1] == b[port + 1] && (0..<ipLength).allSatisfy { a[ip + $0] == b[ip + $0] }
    }
    #endif

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
