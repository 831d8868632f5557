/// How one try on an upstream host ended: the one classification that retry, outlier
/// detection and the host's counters all read (cf. linkerd's `http/classify`), made once where
/// the try ends.
public enum TryResult: Equatable, Sendable {
    /// A response head arrived with this status.
    case response(status: Int)
    /// The connection could not be opened (refused, unreachable, or `connectTimeout`).
    case connectFailure
    /// The connection was reset or closed before a complete response head.
    case reset
    /// An HTTP/2 upstream refused the stream unprocessed (RST_STREAM REFUSED_STREAM, or a stream
    /// above a GOAWAY's last stream id): Envoy's remote refused-stream reset, retried on `refused-stream`.
    case refusedStream
    /// The try's time ran out (per-try or route timeout).
    case timeout
    /// The upstream's bytes were not a valid HTTP/1.1 response.
    case protocolError
    /// A circuit breaker refused the try before it reached the host.
    case overflow

    /// The status outlier detection counts for this result: Envoy's non-split mode treats a
    /// local-origin failure as the gateway error it becomes (connect failure or reset 503,
    /// timeout 504, protocol error 502). nil: nothing reached the host.
    @inline(__always) var outlierStatus: Int? {
        switch self {
        case .response(let status): return status
        case .connectFailure, .reset, .refusedStream: return 503
        case .timeout: return 504
        case .protocolError: return 502
        case .overflow: return nil
        }
    }

    /// Envoy's local-origin errors: the gateway's own attempt failed (no connection, the
    /// connection broke, no answer in time) rather than the host answering badly. Outlier
    /// detection's split mode counts these apart (`consecutiveLocalOriginFailures`).
    @inline(__always) var isLocalOrigin: Bool {
        switch self {
        case .connectFailure, .reset, .refusedStream, .timeout: return true
        case .response, .protocolError, .overflow: return false
        }
    }

    /// Whether the host's `/clusters` counters see an error (a 5xx or no answer at all).
    @inline(__always) var isHostError: Bool {
        guard let status = outlierStatus else { return false }
        return status >= 500
    }
}
