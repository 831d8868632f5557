/// Envoy's per-cluster counters, named as Envoy names them so `/stats` maps onto what users know.
/// Each is bumped where the event happens (grep the case name to find the code).
public enum ClusterCounter: Int, CaseIterable, Sendable {
    case upstream_rq_total
    case upstream_rq_completed
    case upstream_rq_1xx
    case upstream_rq_2xx
    case upstream_rq_3xx
    case upstream_rq_4xx
    case upstream_rq_5xx
    case upstream_rq_pending_total
    case upstream_rq_pending_overflow
    case upstream_rq_cancelled
    case upstream_rq_timeout
    case upstream_rq_per_try_timeout
    case upstream_rq_rx_reset
    case upstream_rq_retry
    case upstream_rq_retry_success
    case upstream_rq_retry_overflow
    case upstream_rq_retry_limit_exceeded
    case retry_or_shadow_abandoned
    case upstream_cx_total
    /// HTTP/2 connections opened (also in `upstream_cx_total`).
    case upstream_cx_http2_total
    case upstream_cx_overflow
    case upstream_cx_protocol_error
    case upstream_cx_connect_fail
    case upstream_cx_connect_timeout
    case upstream_cx_destroy
    case upstream_cx_max_requests
    case upstream_cx_idle_timeout
    case upstream_cx_max_duration_reached
    case upstream_cx_none_healthy
    case update_attempt
    case update_success
    case update_failure
    case membership_change
    case upstream_flow_control_paused_reading_total
    case upstream_flow_control_resumed_reading_total
    case outlier_detection_ejections_enforced_total
    case outlier_detection_ejections_total
    case outlier_detection_ejections_overflow
    case outlier_detection_ejections_enforced_consecutive_5xx
    case outlier_detection_ejections_enforced_consecutive_gateway_failure
    case outlier_detection_ejections_enforced_consecutive_local_origin_failure
    /// A TLS handshake with an endpoint failed (`trafficPolicy.tls`), its certificate refused or
    /// otherwise; counted in `upstream_cx_connect_fail` too.
    case ssl_connection_error
    /// The endpoint's certificate carries none of `subjectAltNames`.
    case ssl_fail_verify_san
    /// gRPC calls by the `grpc-status` they ended with (trailers, a trailers-only head, or the
    /// gateway's own gRPC error), as Envoy's grpc_stats filter counts them without per-method
    /// names: `grpc.<status>`, `grpc.success` (status 0), `grpc.failure`, `grpc.total`.
    case grpc_0, grpc_1, grpc_2, grpc_3, grpc_4, grpc_5, grpc_6, grpc_7, grpc_8, grpc_9, grpc_10, grpc_11, grpc_12,
         grpc_13, grpc_14, grpc_15, grpc_16
    case grpc_success
    case grpc_failure
    case grpc_total

    /// The name printed by `/stats` (dots where Envoy has them).
    public var name: String {
        switch self {
        case .upstream_rq_total: return "upstream_rq_total"
        case .upstream_rq_completed: return "upstream_rq_completed"
        case .upstream_rq_1xx: return "upstream_rq_1xx"
        case .upstream_rq_2xx: return "upstream_rq_2xx"
        case .upstream_rq_3xx: return "upstream_rq_3xx"
        case .upstream_rq_4xx: return "upstream_rq_4xx"
        case .upstream_rq_5xx: return "upstream_rq_5xx"
        case .upstream_rq_pending_total: return "upstream_rq_pending_total"
        case .upstream_rq_pending_overflow: return "upstream_rq_pending_overflow"
        case .upstream_rq_cancelled: return "upstream_rq_cancelled"
        case .upstream_rq_timeout: return "upstream_rq_timeout"
        case .upstream_rq_per_try_timeout: return "upstream_rq_per_try_timeout"
        case .upstream_rq_rx_reset: return "upstream_rq_rx_reset"
        case .upstream_rq_retry: return "upstream_rq_retry"
        case .upstream_rq_retry_success: return "upstream_rq_retry_success"
        case .upstream_rq_retry_overflow: return "upstream_rq_retry_overflow"
        case .upstream_rq_retry_limit_exceeded: return "upstream_rq_retry_limit_exceeded"
        case .retry_or_shadow_abandoned: return "retry_or_shadow_abandoned"
        case .upstream_cx_total: return "upstream_cx_total"
        case .upstream_cx_http2_total: return "upstream_cx_http2_total"
        case .upstream_cx_overflow: return "upstream_cx_overflow"
        case .upstream_cx_protocol_error: return "upstream_cx_protocol_error"
        case .upstream_cx_connect_fail: return "upstream_cx_connect_fail"
        case .upstream_cx_connect_timeout: return "upstream_cx_connect_timeout"
        case .upstream_cx_destroy: return "upstream_cx_destroy"
        case .upstream_cx_max_requests: return "upstream_cx_max_requests"
        case .upstream_cx_idle_timeout: return "upstream_cx_idle_timeout"
        case .upstream_cx_max_duration_reached: return "upstream_cx_max_duration_reached"
        case .upstream_cx_none_healthy: return "upstream_cx_none_healthy"
        case .update_attempt: return "update_attempt"
        case .update_success: return "update_success"
        case .update_failure: return "update_failure"
        case .membership_change: return "membership_change"
        case .upstream_flow_control_paused_reading_total: return "upstream_flow_control_paused_reading_total"
        case .upstream_flow_control_resumed_reading_total: return "upstream_flow_control_resumed_reading_total"
        case .outlier_detection_ejections_enforced_total: return "outlier_detection.ejections_enforced_total"
        case .outlier_detection_ejections_total: return "outlier_detection.ejections_total"
        case .outlier_detection_ejections_overflow: return "outlier_detection.ejections_overflow"
        case .outlier_detection_ejections_enforced_consecutive_5xx: return "outlier_detection.ejections_enforced_consecutive_5xx"
        case .outlier_detection_ejections_enforced_consecutive_gateway_failure: return "outlier_detection.ejections_enforced_consecutive_gateway_failure"
        case .outlier_detection_ejections_enforced_consecutive_local_origin_failure:
            return "outlier_detection.ejections_enforced_consecutive_local_origin_failure"
        case .ssl_connection_error: return "ssl.connection_error"
        case .ssl_fail_verify_san: return "ssl.fail_verify_san"
        case .grpc_0, .grpc_1, .grpc_2, .grpc_3, .grpc_4, .grpc_5, .grpc_6, .grpc_7, .grpc_8, .grpc_9, .grpc_10, .grpc_11,
             .grpc_12, .grpc_13, .grpc_14, .grpc_15, .grpc_16:
            return "grpc.\(rawValue - ClusterCounter.grpc_0.rawValue)"
        case .grpc_success: return "grpc.success"
        case .grpc_failure: return "grpc.failure"
        case .grpc_total: return "grpc.total"
        }
    }
}

public final class ClusterStats: Sendable {
    private let counters = ShardedCounters(count: ClusterCounter.allCases.count)
    /// Envoy's `upstream_rq_time`: from a try's start (asking the pool) to the end of its
    /// upstream response, for tries that got a whole response.
    public let upstreamRqTime: LatencyHistogram
    /// Envoy's `upstream_cx_connect_ms`: from opening a connection to its TCP connect.
    public let upstreamCxConnectMs: LatencyHistogram

    public init(histogramRows: HistogramRows = .any) {
        upstreamRqTime = LatencyHistogram(rows: histogramRows)
        upstreamCxConnectMs = LatencyHistogram(rows: histogramRows)
    }

    /// The histograms by their Envoy names.
    public var histograms: [(String, LatencyHistogram)] {
        [("upstream_cx_connect_ms", upstreamCxConnectMs), ("upstream_rq_time", upstreamRqTime)]
    }

    /// `row`: the event loop's row on the request path; the shared row elsewhere.
    @inline(__always) public func inc(_ c: ClusterCounter, row: Int = ShardedCounters.shared) {
        counters.increment(c.rawValue, row: row)
    }
    public subscript(_ c: ClusterCounter) -> Int { counters[c.rawValue] }

    /// A gRPC call ended with `grpcStatus` (the value of `grpc-status`; one past 16 counts only
    /// as a failure).
    public func countGRPC(_ grpcStatus: Int, row: Int) {
        counters.increment(ClusterCounter.grpc_total.rawValue, row: row)
        counters.increment((grpcStatus == 0 ? ClusterCounter.grpc_success : .grpc_failure).rawValue, row: row)
        if (0...16).contains(grpcStatus) { counters.increment(ClusterCounter.grpc_0.rawValue + grpcStatus, row: row) }
    }

    @inline(__always) public func countResponse(_ status: Int, row: Int) {
        assert(ClusterCounter.upstream_rq_5xx.rawValue - ClusterCounter.upstream_rq_1xx.rawValue == 4, "the class counters are in order")
        guard let codeClass = responseCodeClass(status) else { return }
        counters.increment(ClusterCounter.upstream_rq_1xx.rawValue + codeClass, row: row)
    }
}
