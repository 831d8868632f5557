@testable import GatewayCore

/// A config loaded from JSON text, and the loader's refusal as text, for tests of the loader.
protocol ConfigLoading {}

extension ConfigLoading {
    func load(_ json: String) throws -> GatewayConfig { try ConfigLoader.decode(Array(json.utf8)) }

    func error(_ json: String) -> String {
        do {
            _ = try load(json)
            return "no error"
        } catch {
            return "\(error)"
        }
    }
}
