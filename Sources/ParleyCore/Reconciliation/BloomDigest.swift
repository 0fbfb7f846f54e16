/// The Bloom mode of peer sync (docs/PROTOCOL.md §17.4): a device tells what it holds as Bloom filters of its event
/// hashes, each over one stretch of the hash space and small enough for a datagram, and the other side sends the
/// events a filter does not contain. A false positive hides an event until a later exchange under another salt.
public struct BloomDigest: Equatable, Sendable {
    /// Filter bits per item the reference writes.
    public static let bitsPerItem = 10
    /// Bit positions per item the reference writes (optimal for 10 bits per item).
    public static let defaultHashCount: UInt8 = 7
    /// The most bit positions per item a reader accepts.
    public static let maxHashCount: UInt8 = 16
    /// The bytes of a digest's fixed fields: salt, first and last prefix, hash count.
    static let headerBytes = 13

    /// Picks the bit positions: a digest made under another salt places every item elsewhere.
    public var salt: UInt64
    /// The first and last 16-bit hash prefixes (the hash's first two bytes) the filter covers, inclusive.
    public var firstPrefix: UInt16
    public var lastPrefix: UInt16
    public var hashCount: UInt8
    /// The filter; bit `i` is bit `i % 8` (least significant first) of byte `i / 8`.
    public var bits: [UInt8]

    public init(salt: UInt64, firstPrefix: UInt16, lastPrefix: UInt16, hashCount: UInt8, bits: [UInt8]) {
        self.salt = salt
        self.firstPrefix = firstPrefix
        self.lastPrefix = lastPrefix
        self.hashCount = hashCount
        self.bits = bits
    }

    /// Whether the digest's stretch of the hash space holds `hash`.
    public func covers(_ hash: EventHash256) -> Bool {
        let prefix = Self.prefix(hash)
        return prefix >= firstPrefix && prefix <= lastPrefix
    }

    /// Whether the filter may hold `hash` (false positives at about 1% with the reference's sizes; never a false
    /// negative).
    public func contains(_ hash: EventHash256) -> Bool {
        var found = true
        forEachPosition(of: hash) { position in
            if bits[position >> 3] & (1 << UInt8(position & 7)) == 0 { found = false }
        }
        return found
    }

    private func forEachPosition(of hash: EventHash256, _ body: (Int) -> Void) {
        let size = UInt64(bits.count * 8)
        let first = hash.words.1 ^ salt
        let step = (hash.words.2 ^ (salt << 32 | salt >> 32)) | 1
        for index in 0..<UInt64(hashCount) { body(Int((first &+ index &* step) % size)) }
    }

    static func prefix(_ hash: EventHash256) -> UInt16 { UInt16(truncatingIfNeeded: hash.words.0 >> 48) }

    /// Digests of `hashes` under `salt`, each at most `maxBytes` encoded, together covering the whole hash space.
    public static func digests(of hashes: [EventHash256], salt: UInt64, maxBytes: Int, hashCount: UInt8 = defaultHashCount) -> [BloomDigest] {
        let sorted = hashes.sorted()
        let perDigest = max(1, (maxBytes - headerBytes) * 8 / bitsPerItem)
        var digests: [BloomDigest] = []
        var start = 0
        var firstPrefix: UInt16 = 0
        while start < sorted.count || digests.isEmpty {
            let full = min(start + perDigest, sorted.count)
            // A stretch ends where a prefix does, so that the next digest covers the next prefixes whole: back to the
            // last prefix boundary, or, when one prefix fills the digest (hashes made to share it), on to its end.
            var end = full
            while end < sorted.count, end > start + 1, prefix(sorted[end - 1]) == prefix(sorted[end]) { end -= 1 }
            if end < sorted.count, prefix(sorted[end - 1]) == prefix(sorted[end]) {
                end = full
                while end < sorted.count, prefix(sorted[end - 1]) == prefix(sorted[end]) { end += 1 }
            }
            let isLast = end == sorted.count
            let lastPrefix = isLast ? UInt16.max : prefix(sorted[end - 1])
            let bitCount = max(8, (end - start) * bitsPerItem)
            var digest = BloomDigest(
                salt: salt, firstPrefix: firstPrefix, lastPrefix: lastPrefix, hashCount: hashCount, bits: Array(repeating: 0, count: (bitCount + 7) / 8))
            for hash in sorted[start..<end] {
                digest.forEachPosition(of: hash) { digest.bits[$0 >> 3] |= 1 << UInt8($0 & 7) }
            }
            digests.append(digest)
            if isLast { break }
            firstPrefix = lastPrefix &+ 1
            start = end
        }
        return digests
    }

    /// salt (8 bytes, big-endian), first and last prefix (2 bytes each, big-endian), hash count (1 byte), the filter.
    public var encoded: [UInt8] {
        bigEndian(salt) + [UInt8(firstPrefix >> 8), UInt8(firstPrefix & 0xFF), UInt8(lastPrefix >> 8), UInt8(lastPrefix & 0xFF), hashCount] + bits
    }

    /// Reads a digest: a hash count of 1 … ``maxHashCount``, the first prefix not after the last, a filter of 1 to
    /// `maxBytes` bytes.
    public init(decoding bytes: [UInt8], maxBytes: Int = ReconciliationMessage.maxBytes) throws(ReconciliationError) {
        guard bytes.count <= maxBytes else { throw ReconciliationError("a Bloom digest of \(bytes.count) bytes exceeds \(maxBytes)") }
        var reader = ByteReader(bytes)
        salt = try reader.uint64()
        firstPrefix = try reader.uint16()
        lastPrefix = try reader.uint16()
        hashCount = try reader.byte()
        guard hashCount >= 1, hashCount <= Self.maxHashCount else { throw ReconciliationError("a Bloom digest with \(hashCount) bit positions per item") }
        guard firstPrefix <= lastPrefix else { throw ReconciliationError("a Bloom digest's stretch ends before it starts") }
        guard reader.remaining > 0 else { throw ReconciliationError("a Bloom digest has no filter") }
        bits = try reader.bytes(reader.remaining)
    }
}
