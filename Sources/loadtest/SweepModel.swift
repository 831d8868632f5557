import GatewayCore
import LoadTestCore

/// The sweep's prediction, from the gateway's own config loader and breaker model (what
/// `gateway validate --explain` prints).
enum SweepModel {
    static func prediction(config path: String, cluster: String?, latency: String, gatewayThreads: Int) throws -> SweepPrediction {
        guard let seconds = BreakerModel.parseLatency(latency) else {
            throw OptionError("--latency: '\(latency)' is not a duration (use e.g. 50ms or 0.05s)")
        }
        let config: GatewayConfig
        do {
            config = try ConfigLoader.load(contentsOf: path)
        } catch let e as ConfigError {
            throw OptionError("--explain-config \(path): \(e.description)")
        } catch {
            throw OptionError("--explain-config \(path): \(error)")
        }
        let names = config.hosts.keys.sorted()
        let name: String
        if let cluster {
            guard config.hosts[cluster] != nil else {
                throw OptionError("--cluster: \(path) has no cluster '\(cluster)' (it has: \(names.joined(separator: ", ")))")
            }
            name = cluster
        } else {
            guard names.count == 1 else {
                throw OptionError("--explain-config: name the cluster with --cluster (one of: \(names.joined(separator: ", ")))")
            }
            name = names[0]
        }
        let host = config.hosts[name]!
        let model = BreakerModel(host.trafficPolicy.connectionPool, endpoints: host.endpoints.count, eventLoops: gatewayThreads)
        let lo = model.least, hi = model.most
        let queue: ClosedRange<Int>? = lo.queueFrom.flatMap { q in hi.queueFrom.map { q...$0 } }
        return SweepPrediction(
            cluster: name, latencyMs: seconds * 1000, queueFrom: queue, knee: lo.shedFrom...hi.shedFrom,
            ceiling: model.ceiling(latency: seconds), explanation: model.explain(latency: seconds),
            step: { n in SweepPrediction.Step(regime: model.regime(concurrency: n).rawValue, rate: model.rate(concurrency: n, latency: seconds)) })
    }
}
