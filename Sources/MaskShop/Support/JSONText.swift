import Foundation

/// JSON text for the plain values the services build (dictionaries, arrays, strings, whole
/// numbers, doubles, booleans, null). Foundation's `JSONSerialization.data(withJSONObject:)` was a
/// quarter of order's CPU under load; this writes the same text without its bridging.
enum JSONText {
    static func encode(_ value: Any) -> String {
        var out = ""
        out.reserveCapacity(160)
        write(value, &out)
        return out
    }

    static func write(_ value: Any, _ out: inout String) {
        // Native Swift types first: a cast of a Swift dictionary, array or struct to a class
        // (NSNull, NSNumber) bridges the whole value to Foundation just to fail, which made this
        // writer a fifth of order's CPU when it served event pages.
        switch value {
        case let s as String:
            writeString(s, &out)
        case let n as Int where type(of: value) == Int.self:
            out += String(n)
        case let o as [String: Any]:
            out += "{"
            var first = true
            for (k, v) in o {
                if !first { out += "," }
                first = false
                writeString(k, &out)
                out += ":"
                write(v, &out)
            }
            out += "}"
        case let a as [[String: Any]]:
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                write(v, &out)
            }
            out += "]"
        case let a as [Any]:
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                write(v, &out)
            }
            out += "]"
        case let raw as Raw:
            out += raw.text
        case let b as Bool where type(of: value) == Bool.self:
            out += b ? "true" : "false"
        case let d as Double where type(of: value) == Double.self:
            writeDouble(d, &out)
        default:
            if type(of: value) == NSNull.self {
                out += "null"
            } else if let n = value as? NSNumber {
                // Parsed by Foundation (booleans are NSNumbers too).
                if String(cString: n.objCType) == "c" {
                    out += n.boolValue ? "true" : "false"
                } else if let i = value as? Int {
                    out += String(i)
                } else {
                    writeDouble(n.doubleValue, &out)
                }
            } else if let n = value as? Int {
                out += String(n)
            } else if let d = value as? Double {
                writeDouble(d, &out)
            } else if value is NSNull {
                out += "null"
            } else {
                writeString("\(value)", &out)
            }
        }
    }

    static func writeDouble(_ d: Double, _ out: inout String) {
        out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)) : "null"
    }

    /// Already-encoded JSON spliced in as is (an event's stored payload).
    struct Raw {
        let text: String
    }

    static func writeString(_ s: String, _ out: inout String) {
        out += "\""
        var clean = true
        for u in s.utf8 where u < 0x20 || u == 0x22 || u == 0x5C {
            clean = false
            break
        }
        if clean {
            out += s
        } else {
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if scalar.value < 0x20 {
                        let hex = String(scalar.value, radix: 16)
                        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
        }
        out += "\""
    }
}
