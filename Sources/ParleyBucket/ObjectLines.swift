import ParleyCore
import ParleySync

/// The lines of one bucket object, read within a reader's bounds (docs/PROTOCOL.md §13.4): inflated piece by piece
/// (never past `maxBytes`), split as §10 says, at most `maxLines` lines, and no further than its first lines when
/// they show it is not Parley events. Sync and `bucket verify` read objects this one way.
public struct ObjectLines: @unchecked Sendable {
    /// Lines within the event size limit, and their 1-based numbers.
    public internal(set) var lines: [[UInt8]] = []
    public internal(set) var numbers: [Int] = []
    /// Verification results of the first lines (those the screen looked at); the caller verifies the rest, in one
    /// parallel pass with other objects' lines.
    public var verified: [Result<VerifiedEvent, EventError>] = []
    /// Lines over the event size limit: number and length.
    public internal(set) var tooLong: [(line: Int, bytes: Int)] = []
    /// The number of the line with no LF after it, when the object ends in the middle of one (a file cut short).
    public internal(set) var truncatedLine: Int?
    /// Whether reading stopped at `maxLines`.
    public internal(set) var stoppedAtLimit = false
    /// What the first lines showed; when it says "not events", nothing after them was read.
    public internal(set) var screen = InputScreen()

    /// Reads `bytes` (gzip or not).
    /// - Throws: ``BucketError`` when the gzip stream is corrupt or inflates past `maxBytes`.
    public init(reading bytes: [UInt8], maxLines: Int, maxBytes: Int) throws(BucketError) {
        var reader: JSONLReader
        if Gzip.isGzip(bytes) {
            let gzip = try GzipReader(bytes, maxBytes: maxBytes)
            reader = JSONLReader(maxLineBytes: Event.maxWireBytes) { buffer in try gzip.read(into: buffer) }
        } else {
            reader = JSONLReader(bytes: bytes, maxLineBytes: Event.maxWireBytes)
        }
        var screening = true
        do {
            while let next = try reader.next() {
                if reader.lineNumber > maxLines {
                    stoppedAtLimit = true
                    break
                }
                switch next {
                case .line(let number, let line):
                    lines.append(line)
                    numbers.append(number)
                case .tooLong(let number, let length):
                    tooLong.append((number, length))
                }
                if screening && lines.count + tooLong.count == InputBounds.screenedLines {
                    screening = false
                    if screenFirstLines() { return }
                }
            }
        } catch let error as BucketError {
            throw error
        } catch {
            throw BucketError(.io, "\(error)")
        }
        if reader.endedWithoutNewline && !stoppedAtLimit { truncatedLine = reader.lineNumber }
    }

    /// Verifies the lines read so far and feeds them to the screen in line order.
    /// - Returns: whether the object is not Parley events.
    public mutating func screenFirstLines() -> Bool {
        verified = VerifiedEvent.verifyInParallel(lines)
        var verdicts: [(line: Int, problem: String?)] = zip(numbers, verified).map { number, result in
            if case .failure(let error) = result { return (number, error.message) }
            return (number, nil)
        }
        verdicts += tooLong.map { ($0.line, ObjectLines.tooLongProblem($0.bytes)) }
        for verdict in verdicts.sorted(by: { $0.line < $1.line }) {
            screen.record(line: verdict.line, problem: verdict.problem)
        }
        return screen.isNotEvents
    }

    public static func tooLongProblem(_ bytes: Int) -> String { "\(bytes) bytes, longer than an event may be (\(Event.maxWireBytes))" }

    /// The problem of a line, marked when it is the last line of a file cut short.
    public func problem(_ text: String, line: Int) -> String {
        line == truncatedLine ? "truncated (the file does not end with a newline): \(text)" : text
    }

    /// Verifies the lines not verified yet.
    public mutating func verifyRest() {
        var files = [self]
        ObjectLines.verifyRest(&files)
        self = files[0]
    }

    /// Verifies, on every core at once, the lines of `files` not verified yet.
    public static func verifyRest(_ files: inout [ObjectLines]) {
        let rest = files.flatMap { $0.lines[$0.verified.count...] }
        var results = VerifiedEvent.verifyInParallel(Array(rest))[...]
        for index in files.indices {
            let missing = files[index].lines.count - files[index].verified.count
            files[index].verified += results.prefix(missing)
            results = results.dropFirst(missing)
        }
    }
}
