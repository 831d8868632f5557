import Foundation

/// Runs `executable` to its end and returns what it printed on stdout (stderr discarded).
func outputOf(_ executable: URL, _ arguments: [String]) throws -> Data {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return data
}
