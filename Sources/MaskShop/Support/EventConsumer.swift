import Foundation
import GRDB
import Logging
import ServiceLifecycle

/// Follows a producer's `/events` feed and applies each event together with the new offset in
/// one transaction: a crash or restart re-reads from the stored offset, so every event's effect
/// happens exactly once even though delivery is at least once. While the producer is down it
/// retries with backoff (100 ms doubling to 5 s) and catches up when it returns.
public struct EventConsumer: Service {
    public let feed: String
    public let producerURL: String
    let store: Store
    let logger: Logger
    /// How long applied events took from their `occurredAt` to this consumer's commit.
    let lag: LagRecorder
    /// Applies one event inside the transaction that also stores the offset.
    let apply: @Sendable (Database, _ type: String, _ payload: [String: Any]) throws -> Void
    /// After a page shorter than `pageLimit`, how long to let events gather before asking again.
    /// Under load a page then carries many events (one request, one parse and one commit/fsync
    /// for all of them) instead of one or two, at the cost of at most this much added lag.
    let pace: UInt64 = 20_000_000
    let pageLimit = 500

    public init(feed: String, producerURL: String, store: Store, logger: Logger, lag: LagRecorder = LagRecorder(),
                apply: @escaping @Sendable (Database, String, [String: Any]) throws -> Void) {
        self.lag = lag
        self.feed = feed
        self.producerURL = producerURL
        self.store = store
        self.logger = logger
        self.apply = apply
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await follow() }
        } catch is CancellationError {}
    }

    func follow() async throws {
        var backoff: UInt64 = 100_000_000
        var offset = try await store.pool.read { db in try Store.offset(db, feed: feed) }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let r = try await PeerClient.send(.GET, producerURL, "/events?after=\(offset)&limit=\(pageLimit)&wait=5", timeout: .seconds(10))
                guard r.status == 200, let events = r.json as? [[String: Any]] else {
                    throw PeerError(description: "feed \(feed) answered \(r.status)")
                }
                // The whole page in one transaction with the new offset (one commit per page);
                // each event is re-checked against the stored offset, so nothing applies twice.
                if events.isEmpty { continue }
                let page = Rows(value: events)
                let feed = self.feed
                let apply = self.apply
                let before = offset
                offset = try await store.write { db -> Int in
                    var stored = try Store.offset(db, feed: feed)
                    for event in page.value {
                        guard let seq = event["seq"] as? Int, seq > stored, let type = event["type"] as? String else { continue }
                        try apply(db, type, event["payload"] as? [String: Any] ?? [:])
                        stored = seq
                    }
                    try Store.setOffset(db, feed: feed, seq: stored)
                    return stored
                }
                let now = Date().timeIntervalSince1970
                for event in events {
                    guard let seq = event["seq"] as? Int, seq > before, seq <= offset,
                          let at = (event["occurredAt"] as? String).flatMap(parseRFC3339) else { continue }
                    lag.record(ms: (now - at) * 1000)
                }
                backoff = 100_000_000
                if events.count < pageLimit { try? await Task.sleep(nanoseconds: pace) }
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                logger.debug("feed \(feed) at \(producerURL): \(error); retrying in \(backoff / 1_000_000) ms")
                try? await Task.sleep(nanoseconds: backoff)
                backoff = min(backoff * 2, 5_000_000_000)
            }
        }
    }
}

/// Payload accessors that tolerate JSON numbers of any Swift numeric bridging.
extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
}

/// Event lag samples (milliseconds, the latest 200,000) for `GET /stats/lag`.
public final class LagRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [Double] = []
    private var next = 0
    private let capacity = 200_000

    public init() {}

    func record(ms: Double) {
        lock.lock()
        if samples.count < capacity {
            samples.append(ms)
        } else {
            samples[next] = ms
            next = (next + 1) % capacity
        }
        lock.unlock()
    }

    func reset() {
        lock.lock()
        samples = []
        next = 0
        lock.unlock()
    }

    /// count, p50, p90, p99, max in milliseconds.
    func summary() -> [String: Any] {
        lock.lock()
        let sorted = samples.sorted()
        lock.unlock()
        guard !sorted.isEmpty else { return ["count": 0] }
        func p(_ q: Double) -> Double { (sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] * 10).rounded() / 10 }
        return ["count": sorted.count, "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": p(1)]
    }
}
