import Crypto

/// A 32-byte event hash as four big-endian 64-bit words, so that items sort, compare and add without touching bytes.
public struct EventHash256: Hashable, Comparable, Sendable {
    public var words: (UInt64, UInt64, UInt64, UInt64)

    public static let zero = EventHash256(words: (0, 0, 0, 0))

    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    /// Reads 32 bytes; `nil` for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var values: [UInt64] = [0, 0, 0, 0]
        for (index, byte) in bytes.enumerated() { values[index / 8] = values[index / 8] << 8 | UInt64(byte) }
        words = (values[0], values[1], values[2], values[3])
    }

    /// Reads 64 lowercase hex digits, as the store and events write an event hash.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        self.init(bytes: bytes)
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in [words.0, words.1, words.2, words.3] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return out
    }

    public var hex: String { Hex.encode(bytes) }

    /// The byte at `index` (0 ..< 32).
    @inline(__always) public func byte(_ index: Int) -> UInt8 {
        let word: UInt64 =
            switch index >> 3 {
            case 0: words.0
            case 1: words.1
            case 2: words.2
            default: words.3
            }
        return UInt8(truncatingIfNeeded: word >> UInt64(56 - (index & 7) * 8))
    }

    /// `self + other` modulo 2^256, both read as big-endian integers.
    @inline(__always) public func adding(_ other: EventHash256) -> EventHash256 {
        let (d, c3) = words.3.addingReportingOverflow(other.words.3)
        let (c0, c2a) = words.2.addingReportingOverflow(other.words.2)
        let (c, c2b) = c0.addingReportingOverflow(c3 ? 1 : 0)
        let (b0, c1a) = words.1.addingReportingOverflow(other.words.1)
        let (b, c1b) = b0.addingReportingOverflow(c2a || c2b ? 1 : 0)
        let a = words.0 &+ other.words.0 &+ (c1a || c1b ? 1 : 0)
        return EventHash256(words: (a, b, c, d))
    }

    /// `self - other` modulo 2^256.
    @inline(__always) public func subtracting(_ other: EventHash256) -> EventHash256 {
        let (d, b3) = words.3.subtractingReportingOverflow(other.words.3)
        let (c0, b2a) = words.2.subtractingReportingOverflow(other.words.2)
        let (c, b2b) = c0.subtractingReportingOverflow(b3 ? 1 : 0)
        let (b0, b1a) = words.1.subtractingReportingOverflow(other.words.1)
        let (b, b1b) = b0.subtractingReportingOverflow(b2a || b2b ? 1 : 0)
        let a = words.0 &- other.words.0 &- (b1a || b1b ? 1 : 0)
        return EventHash256(words: (a, b, c, d))
    }

    public static func == (lhs: EventHash256, rhs: EventHash256) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2 && lhs.words.3 == rhs.words.3
    }

    public static func < (lhs: EventHash256, rhs: EventHash256) -> Bool {
        if lhs.words.0 != rhs.words.0 { return lhs.words.0 < rhs.words.0 }
        if lhs.words.1 != rhs.words.1 { return lhs.words.1 < rhs.words.1 }
        if lhs.words.2 != rhs.words.2 { return lhs.words.2 < rhs.words.2 }
        return lhs.words.3 < rhs.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }
}

/// One event as set reconciliation sees it (docs/PROTOCOL.md §17.3): its `timestamp_ms` and its event hash, ordered by
/// timestamp, then hash bytewise.
public struct ReconciliationItem: Hashable, Comparable, Sendable {
    public var timestampMs: UInt64
    public var hash: EventHash256

    public init(timestampMs: UInt64, hash: EventHash256) {
        self.timestampMs = timestampMs
        self.hash = hash
    }

    public static func < (lhs: ReconciliationItem, rhs: ReconciliationItem) -> Bool {
        lhs.timestampMs != rhs.timestampMs ? lhs.timestampMs < rhs.timestampMs : lhs.hash < rhs.hash
    }
}

/// A place in the order of items: every item before it is below the bound. `timestampMs` ``infinity`` is past every
/// item; otherwise an item is below the bound when its timestamp is smaller, or equal with a hash below `prefix` padded
/// with zero bytes to 32.
public struct ReconciliationBound: Hashable, Comparable, Sendable {
    public static let infinity = ReconciliationBound(timestampMs: .max, prefix: [])
    public static let zero = ReconciliationBound(timestampMs: 0, prefix: [])

    public var timestampMs: UInt64
    /// 0 to 32 bytes; no trailing zero byte (it would change nothing).
    public var prefix: [UInt8]

    public init(timestampMs: UInt64, prefix: [UInt8]) {
        self.timestampMs = timestampMs
        self.prefix = prefix
    }

    /// The shortest bound that `lower` is below and `upper` is not: what a splitter writes between two neighbours.
    public init(between lower: ReconciliationItem, and upper: ReconciliationItem) {
        timestampMs = upper.timestampMs
        guard lower.timestampMs == upper.timestampMs else {
            prefix = []
            return
        }
        var length = 0
        while length < 32, lower.hash.byte(length) == upper.hash.byte(length) { length += 1 }
        prefix = (0..<min(length + 1, 32)).map(upper.hash.byte)
    }

    /// Whether `item` comes before this bound.
    @inline(__always) public func isAbove(_ item: ReconciliationItem) -> Bool {
        if item.timestampMs != timestampMs { return item.timestampMs < timestampMs }
        if timestampMs == .max { return true }
        for index in 0..<32 {
            let mine: UInt8 = index < prefix.count ? prefix[index] : 0
            let theirs = item.hash.byte(index)
            if theirs != mine { return theirs < mine }
        }
        return false
    }

    public static func < (lhs: ReconciliationBound, rhs: ReconciliationBound) -> Bool {
        if lhs.timestampMs != rhs.timestampMs { return lhs.timestampMs < rhs.timestampMs }
        for index in 0..<max(lhs.prefix.count, rhs.prefix.count) {
            let left: UInt8 = index < lhs.prefix.count ? lhs.prefix[index] : 0
            let right: UInt8 = index < rhs.prefix.count ? rhs.prefix[index] : 0
            if left != right { return left < right }
        }
        return false
    }
}

/// A device's items in one room, sorted, with running sums so that any range's fingerprint costs two subtractions and
/// one SHA-256 (docs/PROTOCOL.md §17.3).
public struct ReconciliationSet: Sendable {
    /// The items, sorted, without duplicates.
    public let items: [ReconciliationItem]
    /// `sums[i]` is the sum of the hashes of `items[0 ..< i]`, modulo 2^256.
    private let sums: [EventHash256]

    public init(_ unsorted: [ReconciliationItem]) {
        var sorted = unsorted.sorted()
        var unique = 0
        for index in sorted.indices where index == 0 || sorted[index] != sorted[unique - 1] {
            sorted[unique] = sorted[index]
            unique += 1
        }
        sorted.removeLast(sorted.count - unique)
        items = sorted
        var sums: [EventHash256] = [.zero]
        sums.reserveCapacity(sorted.count + 1)
        var running = EventHash256.zero
        for item in sorted {
            running = running.adding(item.hash)
            sums.append(running)
        }
        self.sums = sums
    }

    private init(sorted items: [ReconciliationItem], sums: [EventHash256]) {
        self.items = items
        self.sums = sums
    }

    /// The set with `more` added: appended in place when they all come after the last item (a room's new events
    /// usually do), sorted again otherwise.
    public func adding(_ more: [ReconciliationItem]) -> ReconciliationSet {
        guard !more.isEmpty else { return self }
        let sortedMore = more.sorted()
        guard let last = items.last, sortedMore[0] > last else { return ReconciliationSet(items + more) }
        var items = items
        var sums = sums
        var running = sums[sums.count - 1]
        for item in sortedMore where item != items[items.count - 1] {
            items.append(item)
            running = running.adding(item.hash)
            sums.append(running)
        }
        return ReconciliationSet(sorted: items, sums: sums)
    }

    public var count: Int { items.count }

    /// The index of the first item not below `bound`.
    public func index(of bound: ReconciliationBound) -> Int {
        var low = 0
        var high = items.count
        while low < high {
            let middle = (low + high) / 2
            if bound.isAbove(items[middle]) { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The fingerprint of `items[range]` under a session's salt: the first 4 bytes of SHA-256 of `parley.peer.fp.v1`,
    /// the salt (8 bytes, big-endian), the sum of the range's hashes modulo 2^256 (32 bytes, big-endian) and the count
    /// (8 bytes, big-endian).
    public func fingerprint(_ range: Range<Int>, salt: UInt64) -> [UInt8] {
        Self.fingerprint(sum: sums[range.upperBound].subtracting(sums[range.lowerBound]), count: range.count, salt: salt)
    }

    static let fingerprintDomain: [UInt8] = Array("parley.peer.fp.v1".utf8)

    static func fingerprint(sum: EventHash256, count: Int, salt: UInt64) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: fingerprintDomain)
        hasher.update(data: bigEndian(salt))
        hasher.update(data: sum.bytes)
        hasher.update(data: bigEndian(UInt64(count)))
        return Array(hasher.finalize().prefix(ReconciliationMessage.fingerprintBytes))
    }
}

@inline(__always) func bigEndian(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64(56 - $0 * 8)) }
}
