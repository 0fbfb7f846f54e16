/// One message of range-based set reconciliation (docs/PROTOCOL.md §17.3): ranges of the item order tiling the interval
/// from ``lower`` to the last range's upper bound, each saying what the sender knows of its items there.
///
/// A message is self-contained: it names its own lower bound, so a long message is cut into parts that each fit a
/// datagram (``parts(maxBytes:)``) and a part that is lost costs only its own stretch of the order.
public struct ReconciliationMessage: Equatable, Sendable {
    public enum Mode: Equatable, Sendable {
        /// Nothing to say about the range: it matched, or was settled.
        case skip
        /// ``fingerprintBytes`` bytes: the fingerprint of the sender's items in the range.
        case fingerprint([UInt8])
        /// The short ids of all the sender's items in the range.
        case ids([UInt16])
        /// Short ids the sender lacks among the items the receiver listed for the range: send those events.
        case want([UInt16])
    }

    public struct Range: Equatable, Sendable {
        /// Items below this bound, and not below the previous range's (or the message's lower bound), are in the range.
        public var upper: ReconciliationBound
        public var mode: Mode

        public init(upper: ReconciliationBound, mode: Mode) {
            self.upper = upper
            self.mode = mode
        }
    }

    /// The bytes of a fingerprint.
    public static let fingerprintBytes = 4
    /// The most short ids (`ids` and `want` together) one message may carry.
    public static let maxShortIDs = 1_024
    /// The most ranges one message may carry.
    public static let maxRanges = 8_192
    /// The longest encoded message a reader accepts.
    public static let maxBytes = 65_536

    /// The session's salt, chosen by the device that started it: fingerprints and short ids depend on it, so a
    /// collision in one session is not one in the next.
    public var salt: UInt64
    public var lower: ReconciliationBound
    public var ranges: [Range]

    public init(salt: UInt64, lower: ReconciliationBound, ranges: [Range]) {
        self.salt = salt
        self.lower = lower
        self.ranges = ranges
    }

    /// The short id of an event hash under `salt`: two bytes of the hash at an offset the salt picks (0 … 30).
    @inline(__always) public static func shortID(_ hash: EventHash256, salt: UInt64) -> UInt16 {
        let offset = Int(salt % 31)
        return UInt16(hash.byte(offset)) << 8 | UInt16(hash.byte(offset + 1))
    }

    // MARK: Encoding

    /// The encoded message: the salt (8 bytes, big-endian), the lower bound, then each range (§17.3.2).
    public var encoded: [UInt8] {
        var out = bigEndian(salt)
        Varint.append(lower.timestampMs, to: &out)
        out.append(UInt8(lower.prefix.count))
        out += lower.prefix
        var previous = lower.timestampMs
        for range in ranges { Self.append(range, after: &previous, to: &out) }
        return out
    }

    private static func append(_ range: Range, after previous: inout UInt64, to out: inout [UInt8]) {
        let modeBits: UInt64 =
            switch range.mode {
            case .skip: 0
            case .fingerprint: 1
            case .ids: 2
            case .want: 3
            }
        let hasPrefix: UInt64 = range.upper.prefix.isEmpty ? 0 : 4
        let step: UInt64 = range.upper == .infinity ? 0 : range.upper.timestampMs - previous + 1
        Varint.append(step << 3 | hasPrefix | modeBits, to: &out)
        if hasPrefix != 0 {
            out.append(UInt8(range.upper.prefix.count))
            out += range.upper.prefix
        }
        previous = range.upper.timestampMs
        switch range.mode {
        case .skip: break
        case .fingerprint(let bytes): out += bytes
        case .ids(let ids), .want(let ids):
            Varint.append(UInt64(ids.count), to: &out)
            for id in ids { out += [UInt8(id >> 8), UInt8(id & 0xFF)] }
        }
    }

    /// Reads a message and checks its form: bounds strictly increasing from `lower`, ``ReconciliationBound/infinity``
    /// only last, prefixes of 1 … 32 bytes without a trailing zero, canonical varints, within ``maxBytes``,
    /// ``maxRanges`` and ``maxShortIDs``.
    /// - Throws: ``ReconciliationError`` naming the fault; nothing of a faulty message is used.
    public init(decoding bytes: [UInt8]) throws(ReconciliationError) {
        guard bytes.count <= Self.maxBytes else { throw ReconciliationError("a reconciliation message of \(bytes.count) bytes exceeds \(Self.maxBytes)") }
        var reader = ByteReader(bytes)
        salt = try reader.uint64()
        let lowerTime = try reader.varint()
        guard lowerTime < .max else { throw ReconciliationError("the lower bound is infinity") }
        lower = ReconciliationBound(timestampMs: lowerTime, prefix: try Self.prefix(&reader, length: Int(try reader.byte()), allowEmpty: true))
        var ranges: [Range] = []
        var previous = lower
        var shortIDs = 0
        while !reader.isAtEnd {
            guard ranges.count < Self.maxRanges else { throw ReconciliationError("more than \(Self.maxRanges) ranges") }
            guard previous != .infinity else { throw ReconciliationError("a range follows the infinite bound") }
            let head = try reader.varint()
            let step = head >> 3
            var upper: ReconciliationBound
            if step == 0 {
                guard head & 4 == 0 else { throw ReconciliationError("the infinite bound has a prefix") }
                upper = .infinity
            } else {
                let (time, overflow) = previous.timestampMs.addingReportingOverflow(step - 1)
                guard !overflow, time < .max else { throw ReconciliationError("a bound's timestamp overflows") }
                upper = ReconciliationBound(timestampMs: time, prefix: [])
                if head & 4 != 0 { upper.prefix = try Self.prefix(&reader, length: Int(try reader.byte()), allowEmpty: false) }
            }
            guard previous < upper else { throw ReconciliationError("bounds do not increase") }
            let mode: Mode
            switch head & 3 {
            case 0: mode = .skip
            case 1: mode = .fingerprint(try reader.bytes(Self.fingerprintBytes))
            default:
                let count = try reader.varint()
                guard count <= UInt64(Self.maxShortIDs - shortIDs) else { throw ReconciliationError("more than \(Self.maxShortIDs) short ids") }
                shortIDs += Int(count)
                var ids: [UInt16] = []
                ids.reserveCapacity(Int(count))
                for _ in 0..<count {
                    let pair = try reader.bytes(2)
                    ids.append(UInt16(pair[0]) << 8 | UInt16(pair[1]))
                }
                mode = head & 3 == 2 ? .ids(ids) : .want(ids)
            }
            ranges.append(Range(upper: upper, mode: mode))
            previous = upper
        }
        self.ranges = ranges
    }

    private static func prefix(_ reader: inout ByteReader, length: Int, allowEmpty: Bool) throws(ReconciliationError) -> [UInt8] {
        guard length <= 32, allowEmpty || length > 0 else { throw ReconciliationError("a bound's prefix of \(length) bytes") }
        let prefix = try reader.bytes(length)
        guard prefix.last != 0 else { throw ReconciliationError("a bound's prefix ends in a zero byte") }
        return prefix
    }

    /// The message cut at range boundaries into messages of at most `maxBytes` encoded bytes each, every one naming its
    /// own lower bound; a message that fits is returned whole. A single range longer than `maxBytes` (an `ids` list
    /// near ``maxShortIDs``) is a part of its own.
    public func parts(maxBytes: Int) -> [ReconciliationMessage] {
        var parts: [ReconciliationMessage] = []
        var current = ReconciliationMessage(salt: salt, lower: lower, ranges: [])
        var size = current.encoded.count
        var previous = lower.timestampMs
        for range in ranges {
            var encodedRange: [UInt8] = []
            var from = previous
            Self.append(range, after: &from, to: &encodedRange)
            if !current.ranges.isEmpty, size + encodedRange.count > maxBytes {
                parts.append(current)
                let lower = current.ranges[current.ranges.count - 1].upper
                current = ReconciliationMessage(salt: salt, lower: lower, ranges: [])
                size = current.encoded.count
                encodedRange = []
                from = lower.timestampMs
                Self.append(range, after: &from, to: &encodedRange)
            }
            current.ranges.append(range)
            size += encodedRange.count
            previous = range.upper.timestampMs
        }
        if !current.ranges.isEmpty || parts.isEmpty { parts.append(current) }
        return parts
    }
}

/// A reconciliation message or Bloom digest that breaks the form of docs/PROTOCOL.md §17.3–17.4.
public struct ReconciliationError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "Invalid reconciliation input: \(message)." }
}

/// Unsigned LEB128: seven bits a byte, least significant first, the high bit set on every byte but the last.
enum Varint {
    static func append(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }
}

/// Reads bytes front to back, every read bounded by what is left.
struct ByteReader {
    private let bytes: [UInt8]
    private(set) var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func byte() throws(ReconciliationError) -> UInt8 {
        guard offset < bytes.count else { throw ReconciliationError("it ends early") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func bytes(_ count: Int) throws(ReconciliationError) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw ReconciliationError("it ends early") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func uint64() throws(ReconciliationError) -> UInt64 {
        try bytes(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func uint16() throws(ReconciliationError) -> UInt16 {
        let pair = try bytes(2)
        return UInt16(pair[0]) << 8 | UInt16(pair[1])
    }

    /// A canonical LEB128 value of at most 10 bytes: no trailing zero group, nothing past 64 bits.
    mutating func varint() throws(ReconciliationError) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<10 {
            let byte = try self.byte()
            let group = UInt64(byte & 0x7F)
            guard index < 9 || group <= 1 else { throw ReconciliationError("a varint exceeds 64 bits") }
            value |= group << UInt64(7 * index)
            if byte & 0x80 == 0 {
                guard index == 0 || byte != 0 else { throw ReconciliationError("a varint is not in its shortest form") }
                return value
            }
        }
        throw ReconciliationError("a varint is longer than 10 bytes")
    }
}
