/// Blocks between peers (docs/PROTOCOL.md §17.6): a block is cut into pieces of ``pieceBytes`` (the last one shorter);
/// a want names a block and the ranges of pieces asked for, each piece travels in a datagram of its own, and the
/// receiver puts the block together (``BlockAssembly``) and checks it against its id before keeping it.
public enum BlockPieces {
    /// A piece's bytes: what fits the smallest datagram body (a 64-byte room id, sealed) after the piece's header.
    public static let pieceBytes = 960
    /// The most pieces one want asks for, and the most ranges it names.
    public static let maxPiecesPerWant = 256
    public static let maxRanges = 16

    /// How many pieces a block of `tier` is cut into.
    public static func pieceCount(_ tier: BlockTier) -> Int { (tier.byteCount + pieceBytes - 1) / pieceBytes }

    /// The bytes of piece `index` of a block of `tier`.
    public static func pieceLength(_ index: Int, tier: BlockTier) -> Int { min(pieceBytes, tier.byteCount - index * pieceBytes) }

    static func appendBlock(_ id: BlockID, _ tier: BlockTier, to out: inout [UInt8]) {
        out += id.bytes
        out.append(tier.rawValue)
    }

    static func readBlock(_ reader: inout ByteReader) throws(ReconciliationError) -> (BlockID, BlockTier) {
        let id = BlockID(bytes: try reader.bytes(BlockID.byteCount))!
        guard let tier = BlockTier(rawValue: try reader.byte()) else { throw ReconciliationError("the block's tier is unknown") }
        return (id, tier)
    }
}

/// A want (datagram kind `block_want`): `block id (32) ‖ tier (1) ‖ varint range count ‖ per range: varint gap,
/// varint length`, where each range starts `gap` pieces after the previous one ended (the first after piece 0), and
/// every gap but the first is at least 1.
public struct BlockWant: Equatable, Sendable {
    public var id: BlockID
    public var tier: BlockTier
    /// Ascending, disjoint, not touching; together at most ``BlockPieces/maxPiecesPerWant`` pieces.
    public var ranges: [Range<Int>]

    public init(id: BlockID, tier: BlockTier, ranges: [Range<Int>]) {
        self.id = id
        self.tier = tier
        self.ranges = ranges
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        BlockPieces.appendBlock(id, tier, to: &out)
        Varint.append(UInt64(ranges.count), to: &out)
        var end = 0
        for range in ranges {
            Varint.append(UInt64(range.lowerBound - end), to: &out)
            Varint.append(UInt64(range.count), to: &out)
            end = range.upperBound
        }
        return out
    }

    /// Reads a want, refusing one that asks for pieces past the block's end, more than ``BlockPieces/maxPiecesPerWant``
    /// pieces or more than ``BlockPieces/maxRanges`` ranges, or ranges out of order: its answer is bounded before any
    /// work.
    public init(decoding bytes: [UInt8]) throws(ReconciliationError) {
        var reader = ByteReader(bytes)
        (id, tier) = try BlockPieces.readBlock(&reader)
        let count = try reader.varint()
        guard count >= 1, count <= UInt64(BlockPieces.maxRanges) else { throw ReconciliationError("a want names 1 to \(BlockPieces.maxRanges) ranges") }
        let pieces = UInt64(BlockPieces.pieceCount(tier))
        var end: UInt64 = 0
        var total: UInt64 = 0
        ranges = []
        for index in 0..<Int(count) {
            let gap = try reader.varint()
            let length = try reader.varint()
            guard index == 0 || gap >= 1 else { throw ReconciliationError("a want's ranges touch or overlap") }
            guard length >= 1, gap <= pieces, length <= pieces, end + gap + length <= pieces else {
                throw ReconciliationError("a want asks for pieces past the block's end")
            }
            total += length
            guard total <= UInt64(BlockPieces.maxPiecesPerWant) else {
                throw ReconciliationError("a want asks for more than \(BlockPieces.maxPiecesPerWant) pieces")
            }
            ranges.append(Int(end + gap)..<Int(end + gap + length))
            end += gap + length
        }
        guard reader.isAtEnd else { throw ReconciliationError("a want has bytes after its ranges") }
    }
}

/// A piece (datagram kind `block_piece`): `block id (32) ‖ tier (1) ‖ varint index ‖ the piece's bytes`; or, as the
/// answer to a want for a block the sender does not hold or will not give, no index and no bytes (`block_absent`).
public struct BlockPiece: Equatable, Sendable {
    public var id: BlockID
    public var tier: BlockTier
    public var index: Int
    public var bytes: [UInt8]

    public init(id: BlockID, tier: BlockTier, index: Int, bytes: [UInt8]) {
        self.id = id
        self.tier = tier
        self.index = index
        self.bytes = bytes
    }

    /// Piece `index` of `block`, a block's stored bytes.
    public init(of block: [UInt8], id: BlockID, tier: BlockTier, index: Int) {
        let start = index * BlockPieces.pieceBytes
        self.init(id: id, tier: tier, index: index, bytes: Array(block[start..<start + BlockPieces.pieceLength(index, tier: tier)]))
    }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        BlockPieces.appendBlock(id, tier, to: &out)
        Varint.append(UInt64(index), to: &out)
        return out + bytes
    }

    /// Reads a piece, refusing an index past the block's end or bytes other than that piece's length.
    public init(decoding body: [UInt8]) throws(ReconciliationError) {
        var reader = ByteReader(body)
        (id, tier) = try BlockPieces.readBlock(&reader)
        let index = try reader.varint()
        guard index < UInt64(BlockPieces.pieceCount(tier)) else { throw ReconciliationError("a piece's index is past the block's end") }
        self.index = Int(index)
        guard reader.remaining == BlockPieces.pieceLength(self.index, tier: tier) else {
            throw ReconciliationError("a piece is not its place's length")
        }
        bytes = try reader.bytes(reader.remaining)
    }

    /// The body saying the sender does not give the block: its id and tier alone.
    public static func absent(id: BlockID, tier: BlockTier) -> [UInt8] {
        var out: [UInt8] = []
        BlockPieces.appendBlock(id, tier, to: &out)
        return out
    }

    /// The block a `block_absent` body names.
    public static func decodeAbsent(_ body: [UInt8]) throws(ReconciliationError) -> (id: BlockID, tier: BlockTier) {
        var reader = ByteReader(body)
        let block = try BlockPieces.readBlock(&reader)
        guard reader.isAtEnd else { throw ReconciliationError("an absence has bytes after its block") }
        return block
    }
}

/// A block being put together from its pieces, in any order, each taken once.
public struct BlockAssembly: Sendable {
    public let id: BlockID
    public let tier: BlockTier
    private var bytes: [UInt8]
    private var received: [Bool]
    public private(set) var receivedCount = 0

    public init(id: BlockID, tier: BlockTier) {
        self.id = id
        self.tier = tier
        bytes = Array(repeating: 0, count: tier.byteCount)
        received = Array(repeating: false, count: BlockPieces.pieceCount(tier))
    }

    public var isComplete: Bool { receivedCount == received.count }

    /// Takes a piece of this block. - Returns: whether it was new.
    @discardableResult
    public mutating func insert(_ piece: BlockPiece) -> Bool {
        guard piece.id == id, piece.tier == tier, !received[piece.index] else { return false }
        let start = piece.index * BlockPieces.pieceBytes
        bytes.replaceSubrange(start..<start + piece.bytes.count, with: piece.bytes)
        received[piece.index] = true
        receivedCount += 1
        return true
    }

    /// The first missing pieces, at most `limit` of them in at most ``BlockPieces/maxRanges`` ranges: the next want.
    public func missing(limit: Int = BlockPieces.maxPiecesPerWant) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var total = 0
        var index = 0
        while index < received.count, total < limit, ranges.count < BlockPieces.maxRanges {
            guard !received[index] else {
                index += 1
                continue
            }
            var end = index
            while end < received.count, !received[end], total + (end - index) < limit { end += 1 }
            ranges.append(index..<end)
            total += end - index
            index = end
        }
        return ranges
    }

    /// The block once every piece came and it hashes to its id; `nil` before, or when the pieces made something else
    /// (a sender that lied).
    public var block: [UInt8]? { isComplete && BlockID.of(bytes) == id ? bytes : nil }
}
