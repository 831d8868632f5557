import Foundation

/// A config error a person can act on: where in the file (JSON path) and why.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}

/// A JSON value with the path it was found at, so every check can say where it failed.
struct JSONNode {
    let value: Any
    let path: String

    /// JSON true/false arrive as NSNumber too; only their ObjC type tells them from 1 and 0.
    static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" && "\(type(of: n))".contains("Boolean") }

    func fail(_ reason: String) -> ConfigError { ConfigError(path: path, reason: reason) }

    static func describe(_ v: Any) -> String {
        switch v {
        case is NSNull: return "null"
        case let n as NSNumber:
            return isBoolean(n) ? "a boolean" : "a number"
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        default: return "\(type(of: v))"
        }
    }

    /// An object whose keys must all be in `allowed`.
    func object(allowed: [String]) throws -> JSONObject {
        guard let dict = value as? [String: Any] else { throw fail("expected an object, found \(Self.describe(value))") }
        for key in dict.keys.sorted() where !allowed.contains(key) {
            throw ConfigError(path: child(key), reason: "unknown field '\(key)' (allowed: \(allowed.joined(separator: ", ")))")
        }
        return JSONObject(dict: dict, path: path)
    }

    func array() throws -> [JSONNode] {
        guard let a = value as? [Any] else { throw fail("expected an array, found \(Self.describe(value))") }
        return a.enumerated().map { JSONNode(value: $1, path: "\(path)[\($0)]") }
    }

    func string() throws -> String {
        guard let s = value as? String else { throw fail("expected a string, found \(Self.describe(value))") }
        return s
    }

    func nonEmptyString() throws -> String {
        let s = try string()
        guard !s.isEmpty else { throw fail("must not be empty") }
        return s
    }

    func bool() throws -> Bool {
        guard let n = value as? NSNumber, Self.isBoolean(n) else {
            throw fail("expected true or false, found \(Self.describe(value))")
        }
        return n.boolValue
    }

    func number() throws -> Double {
        guard let n = value as? NSNumber, !Self.isBoolean(n) else {
            throw fail("expected a number, found \(Self.describe(value))")
        }
        return n.doubleValue
    }

    /// A whole number in `range` (the message names the bound that was crossed).
    func int(in range: ClosedRange<Int>) throws -> Int {
        let d = try number()
        guard d.rounded() == d, abs(d) < 1e15 else { throw fail("must be a whole number, found \(d)") }
        let i = Int(d)
        if i < range.lowerBound { throw fail("must be >= \(range.lowerBound), found \(i)") }
        if i > range.upperBound { throw fail("must be <= \(range.upperBound), found \(i)") }
        return i
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

struct JSONObject {
    let dict: [String: Any]
    let path: String

    subscript(_ key: String) -> JSONNode? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        return JSONNode(value: v, path: path.isEmpty ? key : "\(path).\(key)")
    }

    func required(_ key: String) throws -> JSONNode {
        guard let n = self[key] else {
            throw ConfigError(path: path.isEmpty ? key : "\(path).\(key)", reason: "required field is missing")
        }
        return n
    }

    func node() -> JSONNode { JSONNode(value: dict, path: path) }
}
