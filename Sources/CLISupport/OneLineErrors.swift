import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// Runs a command so that bad input ends in one line on stderr and a non-zero exit:
/// `<tool>: <reason>`. `--help` and `--version` still print in full.
public enum CommandRunner {
    /// `arguments`: the command line to parse (without the program name); nil: the process's.
    public static func main<Command: AsyncParsableCommand>(_ type: Command.Type, arguments: [String]? = nil) async {
        do {
            var command = try type.parseAsRoot(arguments)
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            let code = type.exitCode(for: error)
            if code == .success {
                print(type.fullMessage(for: error))
                fflush(nil)
                exit(0)
            }
            let message = type.message(for: error).split(separator: "\n").first.map(String.init) ?? ""
            if !message.isEmpty {
                let name = type.configuration.commandName ?? "command"
                let line = "\(name): \(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message)\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
            exit(code.rawValue)
        }
    }
}
