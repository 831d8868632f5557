#if canImport(Glibc)
import Glibc
#endif

extension ConfigLoader {
    /// Config files past this size are refused: a real one is a few KiB, and the file is
    /// parsed whole in memory (on an admin event loop, for a reload).
    public static let maxConfigFileBytes = 16 << 20

    /// The file's bytes, read with a cap: a file over `maxConfigFileBytes` is refused from its
    /// size, and one that grows while read (or a pipe or device, which has no size) is cut off
    /// at the cap, so an oversized file is never read whole.
    static func readConfigFile(_ path: String) throws -> [UInt8] {
        let tooLarge = ConfigError(path: "", reason: "config file '\(path)' is larger than the \(maxConfigFileBytes >> 20) MiB limit")
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(path: "", reason: "cannot read config file '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        var expected = 64 * 1024
        if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
            guard info.st_size <= maxConfigFileBytes else { throw tooLarge }
            expected = Int(info.st_size) + 1
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(expected)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            // One byte past the cap is enough to know the file is over it.
            let want = min(chunk.count, maxConfigFileBytes + 1 - bytes.count)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ConfigError(path: "", reason: "cannot read config file '\(path)': \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0..<n]
            if bytes.count > maxConfigFileBytes { throw tooLarge }
        }
        return bytes
    }
}
