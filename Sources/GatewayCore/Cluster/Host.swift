import Atomics
import NIOCore

/// One endpoint of a cluster. Shared by every event loop; survives reloads that keep the endpoint,
/// so its ejection history is not forgotten. The load balancer only reads `isEjected`.
public final class Host: Sendable {
    public let endpoint: Endpoint
    public let address: SocketAddress?

    /// Shared by the event loops, and touched by every request to this host: raw cells, so that
    /// using them writes no reference count (see `AtomicCells`).
    private enum Cell: Int, CaseIterable {
        case activeRequests, activeConnections, ejected, consecutive5xx, consecutiveGatewayErrors
        case consecutiveLocalOriginFailures
    }
    private let cells = AtomicCells(count: Cell.allCases.count)
    @inline(__always) var activeRequests: UnsafeAtomic<Int> { cells[Cell.activeRequests.rawValue] }
    @inline(__always) var activeConnections: UnsafeAtomic<Int> { cells[Cell.activeConnections.rawValue] }
    /// 1 while outlier detection keeps the host out of the load balancer.
    @inline(__always) var ejected: UnsafeAtomic<Int> { cells[Cell.ejected.rawValue] }
    @inline(__always) var consecutive5xx: UnsafeAtomic<Int> { cells[Cell.consecutive5xx.rawValue] }
    @inline(__always) var consecutiveGatewayErrors: UnsafeAtomic<Int> { cells[Cell.consecutiveGatewayErrors.rawValue] }
    /// Outlier detection's split mode: connect failures, resets and timeouts in a row.
    @inline(__always) var consecutiveLocalOriginFailures: UnsafeAtomic<Int> {
        cells[Cell.consecutiveLocalOriginFailures.rawValue]
    }
    /// Requests tried on this endpoint and how they ended, for `/clusters`.
    enum RequestCounter: Int, CaseIterable { case total, success, error }
    private let requests = ShardedCounters(count: RequestCounter.allCases.count)
    /// When the host joined its cluster: slow start (`warmup`) ramps its weight from here.
    public let addedAt: NIODeadline

    public init(endpoint: Endpoint, addedAt: NIODeadline = .now()) {
        self.endpoint = endpoint
        self.addedAt = addedAt
        // An IP address is parsed, never looked up (this runs while a config compiles, possibly on
        // an event loop). Names come here resolved by service discovery; only a config built in
        // code may still hold one.
        address = (try? SocketAddress(ipAddress: endpoint.address, port: endpoint.port))
            ?? (try? SocketAddress.makeAddressResolvingHost(endpoint.address, port: endpoint.port))
    }

    deinit { cells.deallocate() }

    @inline(__always) public var isEjected: Bool { ejected.load(ordering: .relaxed) != 0 }
    public var requestsActive: Int { activeRequests.load(ordering: .relaxed) }
    public var connectionsActive: Int { activeConnections.load(ordering: .relaxed) }
    @inline(__always) func count(_ c: RequestCounter, row: Int) { requests.increment(c.rawValue, row: row) }
    public var requestsTotal: Int { requests[RequestCounter.total.rawValue] }
    public var requestsError: Int { requests[RequestCounter.error.rawValue] }
    public var requestsSuccess: Int { requests[RequestCounter.success.rawValue] }
}
