import Crypto
import ParleyCore
import ParleyTesting
import Testing

/// Files cut into sealed blocks and read back (docs/PROTOCOL.md §16), and what a reader refuses.
@Suite struct BlockTests {
    static let key = try! FileKey(bytes: Array(SHA256.hash(data: Array("parley test file key".utf8))))

    /// The file's bytes: a repeatable pattern.
    static func file(_ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) } }

    /// Seals `bytes` in chunks of `chunk`.
    static func seal(_ bytes: [UInt8], chunk: Int = 100_000, whitened: Bool = false) throws -> (
        blocks: [BlockID: [UInt8]], reference: FileReference, order: [BlockID]
    ) {
        var random = SystemRandomNumberGenerator()
        var sealer = try FileSealer(size: Int64(bytes.count), key: key, whitening: whitened ? FileKey.random(using: &random) : nil)
        var made: [SealedBlock] = []
        var start = 0
        repeat {
            made += try sealer.append(bytes[start..<min(start + chunk, bytes.count)])
            start += chunk
        } while start < bytes.count
        let (last, reference) = try sealer.finish()
        made += last
        return (Dictionary(made.map { ($0.id, $0.bytes) }, uniquingKeysWith: { first, _ in first }), reference, made.map(\.id))
    }

    /// The code of the error `body` throws, if it throws a ``BlockError``.
    static func code(_ body: () throws -> Any) -> BlockError.Code? {
        do {
            _ = try body()
            return nil
        } catch {
            return (error as? BlockError)?.code
        }
    }

    /// Reads a file back from `blocks`, as a reader fetching by id would.
    static func read(_ reference: FileReference, from blocks: [BlockID: [UInt8]]) throws -> [UInt8] {
        let reader = FileReader(reference)
        var output: [UInt8] = []
        var queue = [reader.root]
        while !queue.isEmpty {
            let fetch = queue.removeFirst()
            guard let stored = blocks[fetch.id] else { throw BlockError(.idMismatch, "missing \(fetch.id)") }
            if fetch.place.depth == 0 {
                output += try reader.data(stored, randomizer: fetch.randomizer.flatMap { blocks[$0] }, fetched: fetch)
            } else {
                queue.insert(contentsOf: try reader.manifest(stored, fetched: fetch), at: 0)
            }
        }
        return output
    }

    @Test func `a file up to a 64 KiB block's capacity is one block of the smallest tier that holds it`() throws {
        let cases: [(Int64, BlockTier)] = [(0, .small), (1, .small), (1_008, .small), (1_009, .medium), (65_520, .medium)]
        for (size, tier) in cases {
            let layout = try FileLayout(size: size)
            #expect(layout.depth == 0 && layout.dataTier == tier, "\(size) bytes")
        }
    }

    @Test func `a larger file takes 64 KiB blocks up to 16 MiB, 1 MiB blocks up to 4 GiB and 16 MiB blocks beyond, under the manifests it needs`() throws {
        let cases: [(Int64, BlockTier, UInt8, Int64)] = [
            (65_521, .medium, 1, 2), (16 << 20, .medium, 1, 257), ((16 << 20) + 1, .large, 1, 17), (1 << 30, .large, 2, 1_025),
            (4 << 30, .large, 2, 4_097), ((4 << 30) + 1, .huge, 1, 257), (20 << 30, .huge, 2, 1_281), (FileLayout.maxSize, .huge, 2, 65_537),
        ]
        for (size, tier, depth, blocks) in cases {
            let layout = try FileLayout(size: size)
            #expect(layout.dataTier == tier && layout.depth == depth && layout.dataBlockCount == blocks, "\(size) bytes")
        }
        #expect(FileLayout.manifestTier == .medium)
        #expect(throws: BlockError.self) { try FileLayout(size: FileLayout.maxSize + 1) }
        #expect(throws: BlockError.self) { try FileLayout(size: -1) }
    }

    @Test func `files read back byte for byte, every block exactly its tier long and named by its hash`() throws {
        for size in [0, 1, 1_008, 1_009, 65_520, 65_521, 70_000, 16_773_121 + 1_048_560 * 3 + 7] {
            let bytes = Self.file(size)
            let (blocks, reference, _) = try Self.seal(bytes, chunk: 65_536 + 17)
            #expect(reference.layout.size == Int64(size))
            for (id, stored) in blocks {
                #expect(BlockTier.allCases.map(\.byteCount).contains(stored.count))
                #expect(BlockID.of(stored) == id)
            }
            #expect(try Self.read(reference, from: blocks) == bytes, "\(size) bytes")
        }
        // Given in one piece, or a few bytes at a time, a file makes the same blocks.
        let bytes = Self.file(60_000)
        let whole = try Self.seal(bytes, chunk: bytes.count)
        let pieces = try Self.seal(bytes, chunk: 7)
        #expect(whole.order == pieces.order && whole.order.count == 1)
    }

    @Test func `a whitened file stores each data block as its XOR with a random block, and reads back whole`() throws {
        for size in [0, 5, 1_009, 65_520, 65_521, 300_000] {
            let bytes = Self.file(size)
            let plain = try Self.seal(bytes)
            let (blocks, reference, _) = try Self.seal(bytes, chunk: 65_536 + 17, whitened: true)
            #expect(reference.layout.whitened && reference.layout.depth == 1, "\(size)")
            #expect(try Self.read(reference, from: blocks) == bytes, "\(size) bytes")
            // Every data block is two stored blocks, neither of them anything an unwhitened sealing makes.
            let listed = try FileReader(reference).manifest(blocks[reference.root]!, fetched: FileReader(reference).root)
            #expect(blocks.count == 2 * listed.count + 1)
            #expect(Set(blocks.keys).isDisjoint(with: plain.blocks.keys))
            for fetch in listed {
                let (stored, random) = (blocks[fetch.id]!, blocks[fetch.randomizer!]!)
                #expect(stored != random && stored.count == random.count && stored.count == fetch.tier.byteCount)
            }
        }
    }

    @Test func `a whitened block is refused without its random block, with another one, or under a manifest of the wrong flag`() throws {
        let (blocks, reference, _) = try Self.seal(Self.file(200_000), whitened: true)
        let reader = FileReader(reference)
        let listed = try reader.manifest(blocks[reference.root]!, fetched: reader.root)
        let first = listed[0]
        #expect(Self.code { try reader.data(blocks[first.id]!, fetched: first) } == .badManifest)
        #expect(Self.code { try reader.data(blocks[first.id]!, randomizer: blocks[listed[1].randomizer!]!, fetched: first) } == .idMismatch)
        // A random block whose id was changed with it still fails: the XOR is not the sealed block.
        var forged = first
        forged.randomizer = listed[1].randomizer
        #expect(Self.code { try reader.data(blocks[first.id]!, randomizer: blocks[listed[1].randomizer!]!, fetched: forged) } == .decryptFailed)
        // The same manifest read as an unwhitened file's (its reference without the flag) is refused, and the other way.
        let unwhitened = try FileReference(root: reference.root, rootTier: reference.rootTier, key: reference.key, size: 200_000)
        #expect(Self.code { try FileReader(unwhitened).manifest(blocks[reference.root]!, fetched: FileReader(unwhitened).root) } == .badManifest)
        let plain = try Self.seal(Self.file(200_000))
        let claimed = try FileReference(root: plain.reference.root, rootTier: plain.reference.rootTier, key: Self.key, size: 200_000, whitened: true)
        #expect(Self.code { try FileReader(claimed).manifest(plain.blocks[plain.reference.root]!, fetched: FileReader(claimed).root) } == .badManifest)
        // A manifest whose flag byte is anything but 0 or 1 is refused.
        var header = FileManifest(depth: 1, entryTier: .medium, covered: 10, entries: [first.id]).plaintext
        header[7] = 2
        #expect(Self.code { try FileManifest(plaintext: header) } == .badManifest)
    }

    @Test func `a file of more than one block has a manifest root listing its data blocks in order`() throws {
        let size = 255 * 65_520 + 1_000
        let (blocks, reference, order) = try Self.seal(Self.file(size))
        #expect(try Self.seal(Self.file(size), chunk: size).order == order, "the whole file in one piece makes the same blocks")
        #expect(reference.layout.depth == 1 && reference.rootTier == .medium)
        #expect(blocks.count == 257 && order.last == reference.root)
        let reader = FileReader(reference)
        let listed = try reader.manifest(blocks[reference.root]!, fetched: reader.root)
        #expect(listed.map(\.id) == Array(order.dropLast()))
        #expect(listed.map(\.covered).reduce(0, +) == Int64(size))
        #expect(listed.last?.covered == 1_000)
    }

    @Test func `the same file under another key shares no block`() throws {
        let bytes = Self.file(5_000)
        let (first, _, _) = try Self.seal(bytes)
        var sealer = try FileSealer(size: 5_000, key: FileKey(bytes: [UInt8](repeating: 7, count: 32)))
        _ = try sealer.append(bytes)
        let (other, _) = try sealer.finish()
        #expect(Set(first.keys).isDisjoint(with: other.map(\.id)))
    }

    @Test func `a block whose bytes do not match its id, of the wrong length, or moved to another place is refused`() throws {
        let (blocks, reference, order) = try Self.seal(Self.file(16_777_201))
        let reader = FileReader(reference)
        let listed = try reader.manifest(blocks[reference.root]!, fetched: reader.root)
        var tampered = blocks[order[3]]!
        tampered[100] ^= 1
        #expect(Self.code { try reader.data(tampered, fetched: listed[3]) } == .idMismatch)
        #expect(Self.code { try reader.data(Array(tampered.prefix(1_000)), fetched: listed[3]) } == .wrongLength)
        // Block 4's bytes fetched as block 3: its id is right for block 4, but it does not open at place 3.
        var moved = listed[3]
        moved.id = order[4]
        #expect(Self.code { try reader.data(blocks[order[4]]!, fetched: moved) } == .decryptFailed)
        // Under another key nothing opens.
        var wrongKey = reference
        wrongKey.key = try FileKey(bytes: [UInt8](repeating: 1, count: 32))
        #expect(Self.code { try FileReader(wrongKey).manifest(blocks[reference.root]!, fetched: reader.root) } == .decryptFailed)
    }

    /// A manifest sealed as a hostile writer holding the key would: any content, at the root's place.
    static func hostileRoot(_ manifest: [UInt8], size: Int64, tier: BlockTier = .medium) throws -> (FileReference, [UInt8]) {
        let layout = try FileLayout(size: size)
        let stored = BlockSealing.seal(manifest, tier: tier, key: key, place: BlockPlace(depth: layout.depth, index: 0))
        return (FileReference(root: BlockID.of(stored), rootTier: tier, key: key, layout: layout), stored)
    }

    @Test func `manifests that claim sizes beyond their blocks, name a tier that does not exist, or break the layout are refused`() throws {
        let size: Int64 = 16_773_120
        let ids = (0..<256).map { BlockID.of([UInt8($0 % 256), UInt8($0 / 256)]) }
        func refused(_ manifest: [UInt8], _ why: String, size: Int64 = size) throws {
            let (reference, stored) = try Self.hostileRoot(manifest, size: size)
            let reader = FileReader(reference)
            #expect(throws: BlockError.self, "\(why)") { try reader.manifest(stored, fetched: reader.root) }
        }
        let good = FileManifest(depth: 1, entryTier: .medium, covered: size, entries: ids)
        let (reference, stored) = try Self.hostileRoot(good.plaintext, size: size)
        #expect(try FileReader(reference).manifest(stored, fetched: FileReader(reference).root).count == 256)

        try refused(FileManifest(depth: 1, entryTier: .medium, covered: size * 1_000, entries: ids).plaintext, "a size far beyond its blocks")
        try refused(FileManifest(depth: 1, entryTier: .medium, covered: size, entries: Array(ids.prefix(2))).plaintext, "too few blocks for its size")
        try refused(FileManifest(depth: 2, entryTier: .medium, covered: size, entries: ids).plaintext, "a depth other than its place's")
        try refused(FileManifest(depth: 1, entryTier: .huge, covered: size, entries: ids).plaintext, "entries of another tier")
        var unknownTier = good.plaintext
        unknownTier[6] = 13
        try refused(unknownTier, "a tier that does not exist")
        var tooMany = good.plaintext
        tooMany[12...15] = [0, 0, 0x04, 0x01]
        try refused(tooMany, "more than 1,024 entries")
        var badMagic = good.plaintext
        badMagic[0] = UInt8(ascii: "X")
        try refused(badMagic, "bad magic")
        var flags = good.plaintext
        flags[7] = 1
        try refused(flags, "flags this version does not know")
        // The reference promised the root at medium: the same manifest sealed at another tier is refused.
        let (atLarge, largeStored) = try Self.hostileRoot(good.plaintext, size: size, tier: .large)
        var promisedMedium = atLarge
        promisedMedium.rootTier = .medium
        #expect(throws: BlockError.self) { try FileReader(promisedMedium).manifest(largeStored, fetched: FileReader(promisedMedium).root) }
    }

    @Test func `a file of two levels of manifests is followed level by level with the sizes each promises`() throws {
        // 20 GiB: two depth-1 manifests under the root; only the manifests are made, data blocks are not fetched here.
        let size: Int64 = 20 << 30
        let layout = try FileLayout(size: size)
        #expect(layout.depth == 2)
        let span1 = layout.span(depth: 1)
        let level1 = (0..<2).map { index -> SealedBlock in
            let covered = min(span1, size - Int64(index) * span1)
            let count = Int((covered + Int64(layout.dataTier.capacity) - 1) / Int64(layout.dataTier.capacity))
            let manifest = FileManifest(
                depth: 1, entryTier: .huge, covered: covered, entries: (0..<count).map { BlockID.of([UInt8(index), UInt8($0 % 256), UInt8($0 / 256)]) })
            let bytes = BlockSealing.seal(manifest.plaintext, tier: .medium, key: Self.key, place: BlockPlace(depth: 1, index: UInt64(index)))
            return SealedBlock(id: BlockID.of(bytes), bytes: bytes)
        }
        let root = FileManifest(depth: 2, entryTier: .medium, covered: size, entries: level1.map(\.id))
        let rootBytes = BlockSealing.seal(root.plaintext, tier: .small, key: Self.key, place: BlockPlace(depth: 2, index: 0))
        let reader = FileReader(FileReference(root: BlockID.of(rootBytes), rootTier: .small, key: Self.key, layout: layout))
        let children = try reader.manifest(rootBytes, fetched: reader.root)
        #expect(children.map(\.place) == [BlockPlace(depth: 1, index: 0), BlockPlace(depth: 1, index: 1)])
        #expect(children.map(\.covered) == [span1, size - span1])
        let data = try reader.manifest(level1[1].bytes, fetched: children[1])
        #expect(data.count == 257 && data.first?.place == BlockPlace(depth: 0, index: 1_024))
        // The second depth-1 manifest fetched in the first one's place does not open there.
        var swapped = children[0]
        swapped.id = level1[1].id
        #expect(Self.code { try reader.manifest(level1[1].bytes, fetched: swapped) } == .decryptFailed)
    }

    @Test func `a sealer refuses a file that grows past or stops short of its declared size`() throws {
        var growing = try FileSealer(size: 10, key: Self.key)
        #expect(throws: BlockError.self) { try growing.append(Self.file(11)) }
        var short = try FileSealer(size: 10, key: Self.key)
        _ = try short.append(Self.file(9))
        #expect(throws: BlockError.self) { try short.finish() }
    }

    @Test func `block ids are 64 lowercase hex digits and nothing else`() {
        let id = BlockID.of([1, 2, 3])
        #expect(BlockID(hex: id.hex) == id)
        #expect(BlockID(hex: id.hex.uppercased()) == nil)
        #expect(BlockID(hex: String(id.hex.dropLast())) == nil)
        #expect(BlockID(hex: "../" + String(id.hex.dropFirst(3))) == nil)
    }
}
