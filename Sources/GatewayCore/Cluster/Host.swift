import Atomics
import NIOCore

/// One endpoint of a cluster. Shared by every event loop; survives reloads that keep the endpoint,
/// so its ejection history is not forgotten. The load balancer only reads `isEjected`.
public final class Host: Sendable {
    public let endpoint: Endpoint
    public let address: SocketAddress?

    let activeRequests = ManagedAtomic<Int>(0)
    let activeConnections = ManagedAtomic<Int>(0)
    let totalRequests = ManagedAtomic<Int>(0)
    let errorRequests = ManagedAtomic<Int>(0)
    let successRequests = ManagedAtomic<Int>(0)
    let ejected = ManagedAtomic<Bool>(false)
    let consecutive5xx = ManagedAtomic<Int>(0)
    let consecutiveGatewayErrors = ManagedAtomic<Int>(0)

    public init(endpoint: Endpoint) {
        self.endpoint = endpoint
        address = try? SocketAddress.makeAddressResolvingHost(endpoint.address, port: endpoint.port)
    }

    @inline(__always) public var isEjected: Bool { ejected.load(ordering: .relaxed) }
    public var requestsActive: Int { activeRequests.load(ordering: .relaxed) }
    public var connectionsActive: Int { activeConnections.load(ordering: .relaxed) }
    public var requestsTotal: Int { totalRequests.load(ordering: .relaxed) }
    public var requestsError: Int { errorRequests.load(ordering: .relaxed) }
    public var requestsSuccess: Int { successRequests.load(ordering: .relaxed) }
}
