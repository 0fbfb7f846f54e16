import Foundation

/// Reading a file or a stream without trusting its size.
public enum BoundedRead {
    /// Reads `descriptor` to its end, or until it has read more than `maxBytes`: a result longer than `maxBytes`
    /// means there was more (and the rest is not read).
    /// - Parameter source: what is read, for the error (`standard input`, a path).
    /// - Throws: ``ClientError`` `.io` when reading fails.
    public static func bytes(from descriptor: Int32, atMost maxBytes: Int, source: String) throws(ClientError) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: min(1 << 16, maxBytes + 1))
        while bytes.count <= maxBytes {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw ClientError(.io, "Cannot read \(source): \(String(cString: strerror(errno))).") }
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        return bytes
    }
}
