import NIOCore

/// Istio's `fault`: Envoy's fault filter applies the delay first, then the abort.
public struct FaultDecision: Equatable, Sendable {
    public var delay: TimeAmount?
    public var abortStatus: Int?
    /// The abort's gRPC status (`abort.grpcStatus`; `abortStatus` is then 200).
    public var abortGRPCStatus: Int?

    public static let none = FaultDecision(delay: nil, abortStatus: nil)

    public static func decide(_ fault: FaultConfig?, random: inout FastRandom) -> FaultDecision {
        guard let fault else { return .none }
        var d = FaultDecision.none
        if let delay = fault.delay, random.chance(percent: delay.percentage) { d.delay = delay.fixedDelay }
        if let abort = fault.abort, random.chance(percent: abort.percentage) {
            d.abortStatus = abort.httpStatus
            d.abortGRPCStatus = abort.grpcStatus
        }
        return d
    }
}
