import NIOCore

// The only NIO-facing part of HTTP1Wire: the parser and the body decoder work on raw bytes and
// build without NIO, so the fuzz targets under fuzz/ compile them with swiftc alone.

extension ByteBuffer {
    /// Parses a head at the reader index without moving it, with the default options for `kind`.
    @inline(__always)
    public func parseHead(_ kind: HeadParser.Kind) -> Result<MessageHead?, HTTPParseError> {
        parseHead(kind, options: .defaults(for: kind))
    }

    /// Parses a head at the reader index without moving it (`scanned`: see `HeadParser.parse`).
    @inline(__always)
    public func parseHead(
        _ kind: HeadParser.Kind, options: HeadParser.Options, scanned: Int = 0
    ) -> Result<MessageHead?, HTTPParseError> {
        withUnsafeReadableBytes { raw in
            do throws(HTTPParseError) {
                return .success(try HeadParser.parse(raw, kind: kind, options: options, scanned: scanned))
            } catch {
                return .failure(error)
            }
        }
    }

    /// Feeds readable bytes to `decoder`; returns how many belong to the body.
    @inline(__always)
    public func consumeBody(_ decoder: inout BodyDecoder) -> Result<Int, HTTPParseError> {
        withUnsafeReadableBytes { raw in
            do throws(HTTPParseError) { return .success(try decoder.consume(raw)) } catch { return .failure(error) }
        }
    }
}
