import CZlib

/// gzip for `.jsonl.gz` log files, through the system zlib.
public enum Gzip {
    /// Whether `bytes` start with the gzip magic number.
    public static func isGzip(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B }

    /// Decompresses a gzip stream, refusing to produce more than `maxBytes` (a small file can inflate enormously).
    public static func decompress(_ input: [UInt8], maxBytes: Int) throws(BucketError) -> [UInt8] {
        let reader = try GzipReader(input, maxBytes: maxBytes)
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let read = chunk.withUnsafeMutableBytes { buffer in Result { () throws(BucketError) in try reader.read(into: buffer) } }
            let count = try read.get()
            if count == 0 { return output }
            output += chunk[..<count]
        }
    }

    /// Compresses `input` into a gzip stream.
    public static func compress(_ input: [UInt8]) -> [UInt8] {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        guard
            deflateInit2_(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { preconditionFailure("zlib could not start") }
        defer { deflateEnd(stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(stream, uLong(input.count))) + 32)
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer -> Int in
                stream.pointee.next_in = inBuffer.baseAddress
                stream.pointee.avail_in = uInt(inBuffer.count)
                stream.pointee.next_out = outBuffer.baseAddress
                stream.pointee.avail_out = uInt(outBuffer.count)
                precondition(deflate(stream, Z_FINISH) == Z_STREAM_END, "deflateBound was too small")
                return outBuffer.count - Int(stream.pointee.avail_out)
            }
        }
        return Array(output[..<produced])
    }
}

/// Inflates a gzip stream piece by piece, so a reader can stop as soon as it has seen enough: a small object that
/// inflates to millions of junk lines costs only what is read of it.
public final class GzipReader {
    let input: [UInt8]
    let maxBytes: Int
    /// zlib keeps the stream's address and checks it on every call: the stream needs a fixed address, which a Swift
    /// property passed with `&` is not promised to have.
    let stream: UnsafeMutablePointer<z_stream>
    var produced = 0
    var finished = false

    /// - Throws: ``BucketError`` when zlib cannot start or the input is empty.
    public init(_ input: [UInt8], maxBytes: Int) throws(BucketError) {
        guard !input.isEmpty else { throw BucketError(.badResponse, "The gzip stream is empty.") }
        self.input = input
        self.maxBytes = maxBytes
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // 15 + 16: a gzip wrapper, not zlib's own.
        guard inflateInit2_(stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deallocate()
            throw BucketError(.io, "zlib could not start.")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Inflates the next bytes into `buffer`.
    /// - Returns: how many bytes it wrote; 0 only at the end of the stream.
    /// - Throws: ``BucketError`` `.tooLarge` once the stream inflates past `maxBytes`, `.badResponse` when it is
    ///   corrupt or truncated.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(BucketError) -> Int {
        guard !finished, let out = buffer.baseAddress, buffer.count > 0 else { return 0 }
        // The input's address is only valid inside this closure: zlib is pointed at what it has not consumed yet.
        let consumed = Int(stream.pointee.total_in)
        let result = input.withUnsafeBufferPointer { inBuffer -> Int32 in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: inBuffer.baseAddress! + consumed)
            stream.pointee.avail_in = uInt(inBuffer.count - consumed)
            stream.pointee.next_out = out.assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_out = uInt(buffer.count)
            return inflate(stream, Z_NO_FLUSH)
        }
        let count = buffer.count - Int(stream.pointee.avail_out)
        produced += count
        if produced > maxBytes { throw BucketError(.tooLarge, "The gzip stream inflates to more than \(maxBytes) bytes.") }
        if result == Z_STREAM_END {
            finished = true
        } else if result != Z_OK || count == 0 {
            // With room to write and nothing written, the input ran out before the stream ended.
            throw BucketError(.badResponse, "The gzip stream is corrupt or truncated.")
        }
        return count
    }
}
