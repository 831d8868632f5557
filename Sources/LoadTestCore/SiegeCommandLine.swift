import Foundation

/// siege 4's command line as people type it, rewritten into one spelling for the option parser:
/// every option as `--long-name` with its value in the next argument.
///
/// What it takes, as getopt_long does for siege (`VhvqCDNFpgl::ibr:t:f:d:c:m:H:R:A:T:j`):
/// - short options with the value attached or next: `-c2`, `-c 2`, `-t10S`, `-d1`, `-H'A: b'`;
/// - grouped flags, a valued letter last: `-bq`, `-vbc2`;
/// - long options with `=` or a space: `--concurrent=2`, `--concurrent 2`, and any unambiguous
///   prefix of a long name (`--conc=2`);
/// - `-l`/`--log` with an optional value only when attached (`-lFILE`, `--log=FILE`), as in siege;
/// - `--` ends the options; everything else is a URL argument, kept as it is.
public enum SiegeArgv {
    /// siege's letters that take a value, with their long names.
    public static let valued: [Character: String] = [
        "c": "concurrent", "r": "reps", "t": "time", "d": "delay", "f": "file", "R": "rc",
        "m": "mark", "H": "header", "A": "user-agent", "T": "content-type",
    ]
    /// siege's letters without a value.
    public static let flags: [Character: String] = [
        "V": "version", "h": "help", "v": "verbose", "q": "quiet", "C": "config", "g": "get",
        "p": "print", "i": "internet", "b": "benchmark", "j": "json-output",
    ]
    /// Long options that take a value: siege's and loadtest's own.
    public static let valuedLong: Set<String> = Set(valued.values).union([
        "connection", "rate", "timeout", "html", "threads", "failures",
        "sweep", "admin", "cluster", "explain-config", "latency", "gateway-threads",
    ])
    /// Long options without a value.
    public static let flagLong: Set<String> = Set(flags.values).union(["json", "no-parser", "no-follow"])

    /// The arguments (without the program name) in the parser's spelling.
    public static func normalize(_ args: [String]) throws -> [String] {
        var out: [String] = []
        var i = 0
        func next(_ name: String) throws -> String {
            i += 1
            guard i < args.count else { throw OptionError("option '\(name)' needs a value") }
            return args[i]
        }
        while i < args.count {
            let a = args[i]
            if a == "--" {
                out.append(contentsOf: args[i...])
                break
            }
            if a.hasPrefix("--") {
                let body = a.dropFirst(2)
                let name: String
                var value: String?
                if let eq = body.firstIndex(of: "=") {
                    name = String(body[..<eq])
                    value = String(body[body.index(after: eq)...])
                } else {
                    name = String(body)
                }
                let long = try resolveLong(name, as: a)
                if long == "log" {
                    out.append(contentsOf: value.map { ["--log-file", $0] } ?? ["--log"])
                } else if valuedLong.contains(long) {
                    out.append(contentsOf: ["--\(long)", try value ?? next("--\(long)")])
                } else {
                    if value != nil { throw OptionError("option '--\(long)' takes no value") }
                    out.append("--\(long)")
                }
            } else if a.hasPrefix("-") && a.count > 1 {
                var letters = Substring(a.dropFirst())
                while let c = letters.first {
                    letters = letters.dropFirst()
                    if let long = flags[c] {
                        out.append("--\(long)")
                    } else if c == "l" {
                        out.append(contentsOf: letters.isEmpty ? ["--log"] : ["--log-file", String(letters)])
                        letters = ""
                    } else if let long = valued[c] {
                        out.append(contentsOf: ["--\(long)", letters.isEmpty ? try next("-\(c)") : String(letters)])
                        letters = ""
                    } else {
                        throw OptionError("unknown option '-\(c)'\(a.count > 2 ? " in '\(a)'" : "") (see --help)")
                    }
                }
            } else {
                out.append(a)
            }
            i += 1
        }
        return out
    }

    /// A long name or an unambiguous prefix of one (getopt_long's rule).
    static func resolveLong(_ name: String, as typed: String) throws -> String {
        let all = valuedLong.union(flagLong).union(["log"])
        if all.contains(name) { return name }
        let candidates = all.filter { $0.hasPrefix(name) }.sorted()
        if candidates.count == 1, !name.isEmpty { return candidates[0] }
        if candidates.isEmpty { throw OptionError("unknown option '\(typed)' (see --help)") }
        throw OptionError("option '\(typed)' is ambiguous: \(candidates.map { "--" + $0 }.joined(separator: ", "))")
    }
}

/// siege's resource file (`.siegerc`, `siege.conf`): `key = value` lines (or `key: value`, or
/// `key value`), `#` starting a comment, `$(NAME)`/`${NAME}`/`$NAME` replaced by an earlier key
/// of the file or else the environment. Keys are returned in file order; a key may repeat
/// (`header`).
public enum SiegeRC {
    public static func parse(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> [(String, String)] {
        var out: [(String, String)] = []
        var variables: [String: String] = [:]
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            var line = Substring(raw).trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || line.isEmpty { continue }
            // siege keeps '#' in login lines (passwords); elsewhere it starts a comment.
            if !line.hasPrefix("login"), let hash = line.firstIndex(of: "#") {
                line = String(line[..<hash]).trimmingCharacters(in: .whitespaces)
            }
            guard let end = line.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" || $0 == ":" }) else {
                out.append((line, ""))
                continue
            }
            let key = String(line[..<end])
            let value = line[end...].drop { $0 == " " || $0 == "\t" || $0 == "=" || $0 == ":" }
            let expanded = expand(String(value), variables, environment).trimmingCharacters(in: .whitespaces)
            variables[key] = expanded
            out.append((key, expanded))
        }
        return out
    }

    static func expand(_ s: String, _ vars: [String: String], _ env: [String: String]) -> String {
        guard s.contains("$") else { return s }
        var out = ""
        var rest = Substring(s)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            var after = rest[rest.index(after: dollar)...]
            var name = ""
            if let open = after.first, open == "(" || open == "{" {
                let close: Character = open == "(" ? ")" : "}"
                if let end = after.firstIndex(of: close) {
                    name = String(after[after.index(after: after.startIndex)..<end])
                    after = after[after.index(after: end)...]
                }
            } else {
                let n = after.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                name = String(n)
                after = after.dropFirst(n.count)
            }
            if name.isEmpty {
                out += "$"
            } else {
                out += vars[name] ?? env[name] ?? ""
            }
            rest = after
        }
        return out + rest
    }

    public static func read(_ path: String) throws -> [(String, String)] {
        guard let data = FileManager.default.contents(atPath: path) else { throw OptionError("cannot read resource file '\(path)'") }
        return parse(String(decoding: data, as: UTF8.self))
    }

    /// siege's truth test for a value: it starts with "true" (any case). `on`/`yes` count too.
    public static func isTrue(_ v: String) -> Bool {
        let l = v.lowercased()
        return l.hasPrefix("true") || l == "on" || l == "yes"
    }
}
