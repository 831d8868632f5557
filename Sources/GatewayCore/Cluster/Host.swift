import Atomics
import NIOCore

/// One endpoint of a cluster. Shared by every event loop; survives reloads that keep the endpoint,
/// so its ejection history is not forgotten. The load balancer only reads `isEjected`.
public final class Host: Sendable {
    public let endpoint: Endpoint
    public let address: SocketAddress?

    let activeRequests = ManagedAtomic<Int>(0)
    let activeConnections = ManagedAtomic<Int>(0)
    /// Requests tried on this endpoint and how they ended, for `/clusters`.
    enum RequestCounter: Int, CaseIterable { case total, success, error }
    private let requests = ShardedCounters(count: RequestCounter.allCases.count)
    let ejected = ManagedAtomic<Bool>(false)
    let consecutive5xx = ManagedAtomic<Int>(0)
    let consecutiveGatewayErrors = ManagedAtomic<Int>(0)
    /// Outlier detection's split mode: connect failures, resets and timeouts in a row.
    let consecutiveLocalOriginFailures = ManagedAtomic<Int>(0)
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

    @inline(__always) public var isEjected: Bool { ejected.load(ordering: .relaxed) }
    public var requestsActive: Int { activeRequests.load(ordering: .relaxed) }
    public var connectionsActive: Int { activeConnections.load(ordering: .relaxed) }
    @inline(__always) func count(_ c: RequestCounter, row: Int) { requests.increment(c.rawValue, row: row) }
    public var requestsTotal: Int { requests[RequestCounter.total.rawValue] }
    public var requestsError: Int { requests[RequestCounter.error.rawValue] }
    public var requestsSuccess: Int { requests[RequestCounter.success.rawValue] }
}
