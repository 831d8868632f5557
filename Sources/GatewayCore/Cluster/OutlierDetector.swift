import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// Envoy's outlier detection for consecutive errors. Non-split mode: a connect failure or reset
/// counts as a 503 and a timeout as a 504, so both are 5xx and gateway errors. Split mode
/// (`splitExternalLocalOriginErrors`): those local-origin failures count only toward
/// `consecutiveLocalOriginFailures`, and an answer from the host (the connection worked) resets
/// that count; 5xx and gateway errors then count answers alone.
///
/// Results are recorded lock-free per host; only an ejection or the periodic sweep takes the lock.
/// The load balancer never asks the detector: it reads `Host.isEjected`.
public final class OutlierDetector: Sendable {
    public struct HostState: Sendable {
        var ejectedAt: NIODeadline? = nil
        var timesEjected = 0
        var lastUnejected: NIODeadline? = nil
    }

    private struct State: Sendable {
        var settings: OutlierDetectionSettings?
        var hosts: [Host] = []
        var hostState: [ObjectIdentifier: HostState] = [:]
    }

    private let state: NIOLockedValueBox<State>
    private let stats: ClusterStats
    /// Read on every request (`ejectionsActive`, by the load balancer's panic check): a raw cell.
    private let cells = AtomicCells(count: 1)
    @inline(__always) var activeEjections: UnsafeAtomic<Int> { cells[0] }
    /// Envoy caps the growing ejection time at `max_ejection_time`, 300s by default.
    static let maxEjectionTime = TimeAmount.seconds(300)

    public init(settings: OutlierDetectionSettings?, stats: ClusterStats) {
        state = NIOLockedValueBox(State(settings: settings))
        self.stats = stats
    }

    deinit { cells.deallocate() }

    public var ejectionsActive: Int { activeEjections.load(ordering: .relaxed) }
    public var settings: OutlierDetectionSettings? { state.withLockedValue { $0.settings } }

    /// Called on reload: new settings, new endpoint list (kept hosts keep their history).
    public func update(settings: OutlierDetectionSettings?, hosts: [Host]) {
        let unejected: [Host] = state.withLockedValue { s in
            s.settings = settings
            s.hosts = hosts
            let keep = Set(hosts.map(ObjectIdentifier.init))
            s.hostState = s.hostState.filter { keep.contains($0.key) }
            // Without detection nobody stays ejected.
            return settings == nil ? hosts.filter { $0.isEjected } : []
        }
        for h in unejected { uneject(h) }
        recountActive(hosts)
    }

    private func recountActive(_ hosts: [Host]) {
        activeEjections.store(hosts.filter { $0.isEjected }.count, ordering: .relaxed)
    }

    /// What a try on `host` ended with (`TryResult.outlierStatus` maps local-origin failures).
    @inline(__always)
    public func record(_ result: TryResult, host: Host, settings: OutlierDetectionSettings?, now: NIODeadline) {
        guard let settings, let code = result.outlierStatus else { return }
        if settings.splitExternalLocalOriginErrors {
            if result.isLocalOrigin {
                let n = host.consecutiveLocalOriginFailures.wrappingIncrementThenLoad(ordering: .relaxed)
                if settings.consecutiveLocalOriginFailures > 0 && n == settings.consecutiveLocalOriginFailures {
                    eject(host, reason: .outlier_detection_ejections_enforced_consecutive_local_origin_failure, now: now)
                }
                return
            }
            if host.consecutiveLocalOriginFailures.load(ordering: .relaxed) != 0 {
                host.consecutiveLocalOriginFailures.store(0, ordering: .relaxed)
            }
        }
        guard code >= 500 else {
            // Only write when there is something to reset: keeps the success path free of stores.
            if host.consecutive5xx.load(ordering: .relaxed) != 0 { host.consecutive5xx.store(0, ordering: .relaxed) }
            if host.consecutiveGatewayErrors.load(ordering: .relaxed) != 0 {
                host.consecutiveGatewayErrors.store(0, ordering: .relaxed)
            }
            return
        }
        var trigger: ClusterCounter? = nil
        if code == 502 || code == 503 || code == 504 {
            let n = host.consecutiveGatewayErrors.wrappingIncrementThenLoad(ordering: .relaxed)
            if settings.consecutiveGatewayErrors > 0 && n == settings.consecutiveGatewayErrors {
                trigger = .outlier_detection_ejections_enforced_consecutive_gateway_failure
            }
        } else {
            host.consecutiveGatewayErrors.store(0, ordering: .relaxed)
        }
        let n = host.consecutive5xx.wrappingIncrementThenLoad(ordering: .relaxed)
        if settings.consecutive5xxErrors > 0 && n == settings.consecutive5xxErrors {
            trigger = .outlier_detection_ejections_enforced_consecutive_5xx
        }
        if let trigger { eject(host, reason: trigger, now: now) }
    }

    private func eject(_ host: Host, reason: ClusterCounter, now: NIODeadline) {
        let ejectedNow: Bool = state.withLockedValue { s in
            guard let settings = s.settings, !host.isEjected, !s.hosts.isEmpty else { return false }
            let active = s.hosts.filter { $0.isEjected }.count
            // Envoy: eject while the share stays within maxEjectionPercent, and always allow one.
            let percentAfter = 100.0 * Double(active + 1) / Double(s.hosts.count)
            guard percentAfter <= Double(settings.maxEjectionPercent) || active == 0 else {
                stats.inc(.outlier_detection_ejections_overflow)
                return false
            }
            var hs = s.hostState[ObjectIdentifier(host)] ?? HostState()
            hs.ejectedAt = now
            hs.timesEjected += 1
            s.hostState[ObjectIdentifier(host)] = hs
            host.ejected.store(1, ordering: .relaxed)
            return true
        }
        guard ejectedNow else { return }
        host.consecutive5xx.store(0, ordering: .relaxed)
        host.consecutiveGatewayErrors.store(0, ordering: .relaxed)
        host.consecutiveLocalOriginFailures.store(0, ordering: .relaxed)
        activeEjections.wrappingIncrement(ordering: .relaxed)
        stats.inc(.outlier_detection_ejections_total)
        stats.inc(.outlier_detection_ejections_enforced_total)
        stats.inc(reason)
    }

    private func uneject(_ host: Host) {
        host.ejected.store(0, ordering: .relaxed)
        host.consecutive5xx.store(0, ordering: .relaxed)
        host.consecutiveGatewayErrors.store(0, ordering: .relaxed)
        host.consecutiveLocalOriginFailures.store(0, ordering: .relaxed)
    }

    /// The `interval` sweep: returns hosts whose ejection time (base × times ejected, capped)
    /// has passed, and lets a host that stayed healthy for a while shed one step of its multiplier.
    public func sweep(now: NIODeadline) {
        let back: [Host] = state.withLockedValue { s in
            guard let settings = s.settings else { return [] }
            var back: [Host] = []
            for host in s.hosts {
                let id = ObjectIdentifier(host)
                guard var hs = s.hostState[id] else { continue }
                if host.isEjected, let at = hs.ejectedAt {
                    let ejection = min(
                        TimeAmount.nanoseconds(settings.baseEjectionTime.nanoseconds * Int64(max(1, hs.timesEjected))),
                        Self.maxEjectionTime)
                    if now >= at + ejection {
                        hs.ejectedAt = nil
                        hs.lastUnejected = now
                        back.append(host)
                    }
                } else if hs.timesEjected > 0, let last = hs.lastUnejected,
                    now >= last + TimeAmount.nanoseconds(settings.baseEjectionTime.nanoseconds * Int64(hs.timesEjected))
                {
                    hs.timesEjected -= 1
                    hs.lastUnejected = now
                }
                s.hostState[id] = hs
            }
            return back
        }
        for h in back { uneject(h) }
        if !back.isEmpty { activeEjections.wrappingDecrement(by: back.count, ordering: .relaxed) }
    }

    public func timesEjected(_ host: Host) -> Int {
        state.withLockedValue { $0.hostState[ObjectIdentifier(host)]?.timesEjected ?? 0 }
    }
}
