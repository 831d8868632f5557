#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open descriptors, which bounds client and upstream connections together.
public enum DescriptorLimit {
    /// Raises the soft limit to the hard one (as HAProxy and Envoy deployments do) and returns it.
    @discardableResult
    public static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { limit = raised }
        }
        return current
    }

    public static var current: Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 1024 }
        return Int(clamping: min(limit.rlim_cur, rlim_t(Int32.max)))
    }

    #if canImport(Glibc)
    private static let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
    #endif
}

extension DownstreamLimits {
    /// `maxConnections`, or half the descriptor limit when the config leaves it out: the other
    /// half stays for upstream connections (one per request in flight), the admin port and logs,
    /// so a flood of idle clients can never starve the requests of the others.
    public var effectiveMaxConnections: Int {
        maxConnections ?? max(64, (DescriptorLimit.current - 64) / 2)
    }
}
