#if canImport(Glibc)
    import Glibc
#endif

/// Reads JSON Lines in fixed-size chunks, so memory stays bounded whatever the input: a line longer than
/// `maxLineBytes` is skipped (and reported) without being held in memory. Lines are split as docs/PROTOCOL.md §10
/// says: on LF, one CR before it removed, empty lines skipped but counted, a last line without LF read as a line.
public struct JSONLReader {
    public enum Line {
        case line(number: Int, bytes: [UInt8])
        case tooLong(number: Int, length: Int)
    }

    /// Fills a buffer with the input's next bytes and returns how many; 0 only at the end of the input.
    public typealias Source = (UnsafeMutableRawBufferPointer) throws -> Int

    let source: Source
    public let maxLineBytes: Int
    var chunk: [UInt8]
    var chunkStart = 0
    var chunkEnd = 0
    /// The number of the last line read (empty lines count).
    public private(set) var lineNumber = 0
    /// Whether the input ended in the middle of a line: its last line has no LF after it (a file cut short).
    public private(set) var endedWithoutNewline = false
    var finished = false

    /// Reads the lines `source` gives (an object in memory, a gzip stream being inflated).
    public init(maxLineBytes: Int, chunkBytes: Int = 1 << 16, source: @escaping Source) {
        self.source = source
        self.maxLineBytes = maxLineBytes
        chunk = [UInt8](repeating: 0, count: chunkBytes)
    }

    /// The next non-empty line, or `nil` at the end of the input.
    /// - Throws: what the source throws.
    public mutating func next() throws -> Line? {
        var current: [UInt8] = []
        var length = 0
        while true {
            if chunkStart == chunkEnd {
                if finished { break }
                let source = source
                let count = try chunk.withUnsafeMutableBytes { try source($0) }
                if count == 0 {
                    finished = true
                    break
                }
                chunkStart = 0
                chunkEnd = count
            }
            let newline = chunk.withUnsafeBufferPointer { $0.lineFeed(in: chunkStart..<chunkEnd) }
            let end = newline ?? chunkEnd
            let piece = end - chunkStart
            if length + piece <= maxLineBytes { current.append(contentsOf: chunk[chunkStart..<end]) }
            length += piece
            chunkStart = newline.map { $0 + 1 } ?? chunkEnd
            if newline != nil {
                lineNumber += 1
                if let line = emit(&current, length: length) { return line }
                length = 0
            }
        }
        if length > 0 {
            lineNumber += 1
            endedWithoutNewline = true
            return emit(&current, length: length)
        }
        return nil
    }

    /// The finished line, or `nil` for an empty one (skipped, but counted).
    private func emit(_ current: inout [UInt8], length: Int) -> Line? {
        if length > maxLineBytes { return .tooLong(number: lineNumber, length: length) }
        if current.last == 0x0D { current.removeLast() }
        if current.isEmpty { return nil }
        return .line(number: lineNumber, bytes: current)
    }
}

extension UnsafeBufferPointer<UInt8> {
    /// The position of the first line feed in `range`, found with memchr: searching byte by byte was the largest
    /// cost of splitting input into lines.
    func lineFeed(in range: Range<Int>) -> Int? {
        guard !range.isEmpty, let base = baseAddress, let found = memchr(base + range.lowerBound, 0x0A, range.count) else { return nil }
        return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
    }
}

extension JSONLReader {
    /// Reads the lines of `bytes` (an object already in memory).
    public init(bytes: [UInt8], maxLineBytes: Int) {
        let cursor = ReadCursor()
        self.init(maxLineBytes: maxLineBytes) { buffer in
            let count = min(buffer.count, bytes.count - cursor.offset)
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[cursor.offset..<cursor.offset + count])) }
            cursor.offset += count
            return count
        }
    }
}

/// How far a reader of bytes in memory has got.
final class ReadCursor {
    var offset = 0
}
