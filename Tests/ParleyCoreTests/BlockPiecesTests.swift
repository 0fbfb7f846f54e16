import ParleyCore
import ParleyTesting
import Testing

@Suite struct BlockPiecesTests {
    static func block(_ tier: BlockTier, seed: UInt64) -> (id: BlockID, bytes: [UInt8]) {
        var generator = SeededGenerator(seed: seed)
        let bytes = (0..<tier.byteCount).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        return (BlockID.of(bytes), bytes)
    }

    @Test func `every piece of every tier fits the smallest datagram body`() {
        let longestRoom = String(repeating: "r", count: 64)
        let budget = PeerDatagram.bodyBudget(roomID: longestRoom, sealed: true)
        for tier in BlockTier.allCases {
            let last = BlockPieces.pieceCount(tier) - 1
            let piece = BlockPiece(id: BlockID.of([1]), tier: tier, index: last, bytes: Array(repeating: 0, count: BlockPieces.pieceLength(last, tier: tier)))
            let first = BlockPiece(id: BlockID.of([1]), tier: tier, index: 0, bytes: Array(repeating: 0, count: BlockPieces.pieceLength(0, tier: tier)))
            #expect(piece.encoded.count <= budget && first.encoded.count <= budget, "\(tier)")
            #expect((0...last).reduce(0) { $0 + BlockPieces.pieceLength($1, tier: tier) } == tier.byteCount)
        }
    }

    @Test func `a block put together from its pieces in any order, some twice, is the block`() throws {
        let (id, bytes) = Self.block(.medium, seed: 3)
        var generator = SeededGenerator(seed: 9)
        var order = Array(0..<BlockPieces.pieceCount(.medium))
        order.shuffle(using: &generator)
        var assembly = BlockAssembly(id: id, tier: .medium)
        for index in order + order.prefix(10) {
            let piece = try BlockPiece(decoding: BlockPiece(of: bytes, id: id, tier: .medium, index: index).encoded)
            assembly.insert(piece)
        }
        #expect(assembly.receivedCount == BlockPieces.pieceCount(.medium))
        #expect(assembly.block == bytes)
    }

    @Test func `what is missing is asked for in ascending ranges of at most the want's limit`() throws {
        let (id, bytes) = Self.block(.large, seed: 4)
        var assembly = BlockAssembly(id: id, tier: .large)
        for index in [0, 1, 5, 300] { assembly.insert(BlockPiece(of: bytes, id: id, tier: .large, index: index)) }
        let missing = assembly.missing()
        #expect(missing.first == 2..<5)
        #expect(missing.reduce(0) { $0 + $1.count } == BlockPieces.maxPiecesPerWant)
        let want = BlockWant(id: id, tier: .large, ranges: missing)
        #expect(try BlockWant(decoding: want.encoded) == want)
        // Holes everywhere: at most the ranges a want may name.
        var holes = BlockAssembly(id: id, tier: .large)
        for index in stride(from: 0, to: BlockPieces.pieceCount(.large), by: 2) { holes.insert(BlockPiece(of: bytes, id: id, tier: .large, index: index)) }
        #expect(holes.missing().count == BlockPieces.maxRanges)
        #expect(try BlockWant(decoding: BlockWant(id: id, tier: .large, ranges: holes.missing()).encoded).ranges == holes.missing())
    }

    @Test func `pieces that make another block leave no block`() {
        let (id, bytes) = Self.block(.small, seed: 5)
        var assembly = BlockAssembly(id: id, tier: .small)
        assembly.insert(BlockPiece(of: bytes, id: id, tier: .small, index: 0))
        assembly.insert(BlockPiece(id: id, tier: .small, index: 1, bytes: Array(repeating: 7, count: BlockPieces.pieceLength(1, tier: .small))))
        #expect(assembly.isComplete)
        #expect(assembly.block == nil)
    }

    @Test func `a want or piece that asks or claims too much is refused with what is wrong`() throws {
        let id = BlockID.of([1])
        func want(_ ranges: [(gap: UInt8, length: [UInt8])], tier: UInt8 = BlockTier.medium.rawValue) -> [UInt8] {
            id.bytes + [tier, UInt8(ranges.count)] + ranges.flatMap { [$0.gap] + $0.length }
        }
        let cases: [([UInt8], String)] = [
            (want([(0, [70])]), "past the block's end"),
            (want([(0, [10]), (0, [5])]), "touch or overlap"),
            (want([], tier: 16), "1 to 16 ranges"),
            (want([(0, [5])], tier: 11), "tier is unknown"),
            (BlockWant(id: id, tier: .large, ranges: [0..<200, 201..<400]).encoded, "more than 256 pieces"),
            (want([(0, [5])]) + [0], "bytes after its ranges"),
            (Array(id.bytes.prefix(20)), "ends early"),
        ]
        for (bytes, reason) in cases {
            #expect(throws: ReconciliationError.self, "\(reason)") { try BlockWant(decoding: bytes) }
            do { _ = try BlockWant(decoding: bytes) } catch { #expect(error.message.contains(reason), "\(error.message) for \(reason)") }
        }
        let piece = BlockPiece(id: id, tier: .small, index: 1, bytes: Array(repeating: 0, count: 64)).encoded
        #expect(throws: ReconciliationError("a piece is not its place's length")) { try BlockPiece(decoding: piece + [0]) }
        #expect(throws: ReconciliationError("a piece's index is past the block's end")) {
            try BlockPiece(decoding: id.bytes + [BlockTier.small.rawValue, 2] + Array(repeating: 0, count: 64))
        }
        #expect(try BlockPiece.decodeAbsent(BlockPiece.absent(id: id, tier: .huge)) == (id, .huge))
    }
}
