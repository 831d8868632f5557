import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Service discovery for ServiceEntries with `resolution: DNS` or `DNS_ROUND_ROBIN` (Envoy's
/// STRICT_DNS and LOGICAL_DNS clusters): endpoint names are resolved on NIO's thread pool, never
/// on an event loop, at start (before the listener takes requests) and then every
/// `dnsRefreshRate`. When a name's addresses change the runtime compiles a new snapshot, exactly
/// as a reload does: new hosts take requests at once; a host that went drains (its pool takes no
/// new request, the ones on it finish, its connections close after them). A failed or empty
/// resolution keeps the name's last good addresses (`update_failure`). DNS TTLs are not read
/// (getaddrinfo does not return them); the refresh rate is the only clock, as with Envoy's
/// default `respect_dns_ttl: false`.
extension GatewayRuntime {
    /// The names to resolve: endpoint addresses of DNS clusters that are not IP addresses.
    static func dnsNames(_ config: GatewayConfig) -> [String: [String]] {
        var byCluster: [String: [String]] = [:]
        for (name, host) in config.hosts where host.resolution != .static {
            let names = host.endpoints.map(\.address).filter { !ConfigLoader.isIPAddress($0) }
            if !names.isEmpty { byCluster[name] = Array(Set(names)).sorted() }
        }
        return byCluster
    }

    /// A DNS cluster's hosts: each name's last good addresses on the endpoint's port and weight
    /// (only the first address for DNS_ROUND_ROBIN); IP endpoints as they are; a name not resolved
    /// yet gives no host.
    static func resolvedEndpoints(_ host: HostConfig, _ resolved: [String: [String]]) -> HostConfig {
        guard host.resolution != .static else { return host }
        var out = host
        var endpoints: [Endpoint] = []
        var seen: Set<Endpoint> = []
        for e in host.endpoints {
            let addresses: [String]
            if ConfigLoader.isIPAddress(e.address) {
                addresses = [e.address]
            } else {
                let all = resolved[e.address] ?? []
                addresses = host.resolution == .dnsRoundRobin ? Array(all.prefix(1)) : all
            }
            for a in addresses {
                let endpoint = Endpoint(address: a, port: e.port, weight: e.weight, labels: e.labels)
                if seen.insert(endpoint).inserted { endpoints.append(endpoint) }
            }
        }
        out.endpoints = endpoints
        return out
    }

    /// Whether `config` names a DNS endpoint that has no addresses yet.
    func needsResolution(_ config: GatewayConfig) -> Bool {
        let names = Self.dnsNames(config).values.joined()
        return state.withLockedValue { st in names.contains { st.resolved[$0] == nil } }
    }

    /// Resolves every DNS name of the config in force once; completes when the results are
    /// applied. One round at a time: a round asked for while one runs starts when that one ends
    /// (the running round resolves the names of the config it started with, so the names a
    /// reload brings meanwhile would otherwise wait a whole `dnsRefreshRate` with no host).
    func refreshDNS() -> EventLoopFuture<Void> {
        let loop = group.next()
        let (config, resolver, alreadyRunning) = state.withLockedValue { st -> (GatewayConfig, EndpointResolver, Bool) in
            if st.resolving { st.resolveAgain = true }
            defer { st.resolving = true }
            return (st.snapshot.config, st.resolver, st.resolving)
        }
        let byCluster = Self.dnsNames(config)
        guard !alreadyRunning else { return loop.makeSucceededVoidFuture() }
        guard !byCluster.isEmpty else {
            let again = state.withLockedValue { st -> Bool in
                st.resolving = false
                defer { st.resolveAgain = false }
                return st.resolveAgain
            }
            return again ? refreshDNS() : loop.makeSucceededVoidFuture()
        }
        let names = Array(Set(byCluster.values.joined())).sorted()
        let lookups = names.map { name in
            NIOThreadPool.singleton.runIfActive(eventLoop: loop) { try resolver.resolve(name) }
                .map { Optional($0) }
                .recover { _ in nil }
        }
        return EventLoopFuture.whenAllSucceed(lookups, on: loop).flatMap { results in
            NIOThreadPool.singleton.runIfActive(eventLoop: loop) {
                self.applyResolution(Dictionary(uniqueKeysWithValues: zip(names, results)), byCluster: byCluster)
            }
        }.recover { _ in
            // The thread pool has stopped (shutdown): the round ends without being applied.
            self.state.withLockedValue { $0.resolving = false }
        }
    }

    /// Keeps the new addresses of names that resolved, counts per cluster, and installs a new
    /// snapshot when any cluster's hosts changed.
    private func applyResolution(_ results: [String: [String]?], byCluster: [String: [String]]) {
        // It may compile a whole snapshot, under the lock a reload holds while it compiles: like a
        // reload (AdminServer runs it on the thread pool), never on a loop that serves requests.
        assert(MultiThreadedEventLoopGroup.currentEventLoop == nil, "a DNS round is applied on an event loop")
        let (next, again): (Compiled?, Bool) = state.withLockedValue { st in
            st.resolving = false
            let again = st.resolveAgain
            st.resolveAgain = false
            var changedNames: Set<String> = []
            for (name, addresses) in results {
                guard let addresses, !addresses.isEmpty else { continue }
                // The same addresses in another order (a DNS server rotating its records, as
                // round-robin DNS does) are no change: Envoy compares hosts, not the order they
                // came in. Taken as a change, every refresh would compile and install a new
                // snapshot, count membership_change, and move a DNS_ROUND_ROBIN cluster to another
                // host, draining its connections.
                if let old = st.resolved[name], old.count == addresses.count, Set(old) == Set(addresses) { continue }
                if st.resolved[name] != addresses {
                    st.resolved[name] = addresses
                    changedNames.insert(name)
                }
            }
            // Names no config uses any more are forgotten (the map stays as large as the config).
            let inUse = Set(Self.dnsNames(st.snapshot.config).values.joined())
            st.resolved = st.resolved.filter { inUse.contains($0.key) }
            for (clusterName, names) in byCluster {
                guard let cluster = st.clusters[clusterName] else { continue }
                cluster.stats.inc(.update_attempt)
                let failed = names.contains { results[$0].flatMap { $0 }?.isEmpty ?? true }
                cluster.stats.inc(failed ? .update_failure : .update_success)
                if names.contains(where: changedNames.contains) { cluster.stats.inc(.membership_change) }
            }
            guard !changedNames.isEmpty else { return (nil, again) }
            do {
                let next = try Self.compile(st.snapshot.config, version: st.snapshot.version + 1, loops: workers.count, into: &st)
                st.snapshot = next.shared
                return (next, again)
            } catch {
                // The config compiled before with these clusters; only route regexes can throw.
                return (nil, again)
            }
        }
        if let next { install(next) }
        if again { _ = refreshDNS() }
    }

    /// Runs `refreshDNS` every `dnsRefreshRate` of the config in force, until the loops shut down.
    func scheduleDNSRefresh() {
        let rate = state.withLockedValue { $0.snapshot.config.dnsRefreshRate }
        group.next().scheduleTask(in: rate) { [weak self] in
            guard let self else { return }
            self.refreshDNS().whenComplete { [weak self] _ in self?.scheduleDNSRefresh() }
        }
    }
}
