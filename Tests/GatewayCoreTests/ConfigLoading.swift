@testable import GatewayCore

/// A config loaded from JSON text, and the loader's refusal as text, for tests of the loader.
protocol ConfigLoading {}

extension ConfigLoading {
    func load(_ json: String) throws -> GatewayConfig { try ConfigLoader.decode(Array(json.utf8)) }

    func error(_ json: String) -> String { configErrorText { try load(json) } }
}

/// What a decode throws, as its text ("path: reason"), or "no error" when it loads.
func configErrorText<T>(_ decode: () throws -> T) -> String {
    do {
        _ = try decode()
        return "no error"
    } catch {
        return "\(error)"
    }
}
