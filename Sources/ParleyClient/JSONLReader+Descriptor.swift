import ParleySync

#if canImport(Glibc)
    import Glibc
#endif

extension JSONLReader {
    /// Reads the lines of an open file.
    /// - Parameters:
    ///   - descriptor: an open file descriptor; the reader does not close it.
    ///   - maxLineBytes: the longest line returned; longer lines are reported as ``Line/tooLong(number:length:)``.
    public init(descriptor: Int32, maxLineBytes: Int = 1 << 20, chunkBytes: Int = 1 << 20) {
        self.init(maxLineBytes: maxLineBytes, chunkBytes: chunkBytes) { buffer in
            while true {
                let count = read(descriptor, buffer.baseAddress, buffer.count)
                if count >= 0 { return count }
                if errno != EINTR { throw ClientError(.io, "Cannot read the input: \(String(cString: strerror(errno))).") }
            }
        }
    }
}
