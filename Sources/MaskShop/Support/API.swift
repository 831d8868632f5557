import Foundation
import Hummingbird
import Logging
import NIOCore

/// A 4xx/5xx the client gets as `{"error": "<reason>"}`: Hummingbird answers with it wherever a
/// handler (or a database write the handler awaits) throws it.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    public var reason: String
    public init(_ status: HTTPResponse.Status, _ reason: String) {
        self.status = status
        self.reason = reason
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSON.response(status, ["error": reason])
    }
}

/// Answers any other error a shop route throws (the database's, a peer's, Hummingbird's own such
/// as a body over the size limit) as a 503 naming it, as the shop always has: a client gets a
/// status and a JSON reason, never Hummingbird's bare 500.
struct UnexpectedErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.serviceUnavailable, "\(error)")
        }
    }
}

enum JSON {
    /// The largest request body a shop endpoint reads.
    static let maxBodyBytes = 1 << 20

    static func response(_ status: HTTPResponse.Status, _ object: Any) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: JSONText.encode(object))))
    }

    /// The request body as a JSON object, or a 400 saying what is wrong with it.
    static func object(_ request: Request) async throws -> [String: Any] {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Self.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, "request body is larger than \(Self.maxBodyBytes) bytes")
        }
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "request body is empty: expected a JSON object") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))
        } catch {
            throw APIError(.badRequest, "malformed JSON body")
        }
        guard let dict = parsed as? [String: Any] else { throw APIError(.badRequest, "expected a JSON object") }
        return dict
    }

    /// A whole number field within range; 400 names the field when it is missing or wrong.
    /// A JSON number or a string of decimal digits (`"1111"`, as httpie's `key=value` sends it and
    /// as Jackson accepted it) counts; fractions, exponents, booleans and other text do not.
    static func int(_ o: [String: Any], _ key: String, min: Int = 0, optional: Bool = false) throws -> Int? {
        guard let v = o[key], !(v is NSNull) else {
            if optional { return nil }
            throw APIError(.badRequest, "missing field '\(key)'")
        }
        let value: Int
        if let s = v as? String {
            guard let n = wholeNumber(s) else {
                throw APIError(.badRequest, "field '\(key)' must be a whole number, got \(JSONText.encode(s))")
            }
            value = n
        } else if let n = v as? NSNumber, String(cString: n.objCType) != "c", n.doubleValue.rounded() == n.doubleValue,
                  abs(n.doubleValue) < 9e15 {
            value = n.intValue
        } else {
            throw APIError(.badRequest, "field '\(key)' must be a whole number")
        }
        guard value >= min else { throw APIError(.badRequest, "field '\(key)' must be >= \(min), got \(value)") }
        return value
    }

    /// `"1111"`, `" 1111 "`, `"+5"`, `"-3"` → the number; anything else (fractions, exponents,
    /// empty, more than 15 digits) → nil.
    static func wholeNumber(_ text: String) -> Int? {
        var digits = Substring(text.trimmingCharacters(in: .whitespaces))
        var sign = 1
        if let first = digits.first, first == "+" || first == "-" {
            sign = first == "-" ? -1 : 1
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits).map { $0 * sign }
    }

    /// A string field (`type`); 400 names the field when it is missing or not a string.
    static func string(_ o: [String: Any], _ key: String, hint: String) throws -> String {
        guard let v = o[key], !(v is NSNull) else { throw APIError(.badRequest, "missing field '\(key)' (\(hint))") }
        guard let s = v as? String else { throw APIError(.badRequest, "field '\(key)' must be a string (\(hint))") }
        return s
    }

    static func required(_ o: [String: Any], _ key: String, min: Int = 0) throws -> Int {
        try int(o, key, min: min)!
    }
}

extension Request {
    func intQuery(_ name: String) throws -> Int? {
        guard let raw = uri.queryParameters[name[...]] else { return nil }
        guard let v = Int(String(raw)) else { throw APIError(.badRequest, "query parameter '\(name)' must be a whole number") }
        return v
    }
}

extension BasicRequestContext {
    func intParameter(_ name: String) throws -> Int {
        guard let raw = parameters.get(name), let v = Int(raw) else {
            throw APIError(.badRequest, "path parameter '\(name)' must be a whole number")
        }
        return v
    }
}

/// JSON-shaped values leaving a database closure (GRDB's `Row` is not Sendable; these are
/// plain dictionaries built inside the closure and never shared).
struct Rows: @unchecked Sendable {
    let value: [[String: Any]]
}

struct Record: @unchecked Sendable {
    let value: [String: Any]
}

/// One log line per request that changes something (`POST /orders 201`), with the request's
/// trace id from the logger's metadata provider; reads (`GET`, `HEAD`, among them the event
/// feeds' long polls) only at debug level.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let level: Logger.Level = request.method == .get || request.method == .head ? .debug : .info
        do {
            let response = try await next(request, context)
            context.logger.log(level: level, "\(request.method) \(request.uri.path) \(response.status.code)")
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            context.logger.log(level: level, "\(request.method) \(request.uri.path) \(status)")
            throw error
        }
    }
}
