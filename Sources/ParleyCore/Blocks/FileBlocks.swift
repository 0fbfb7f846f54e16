import Crypto
import Foundation

/// How a file of a given size is cut into blocks (docs/PROTOCOL.md §16.3). Up to a 64 KiB block's capacity a file is
/// one data block of the smallest tier that holds it. A larger one is cut into data blocks of 64 KiB up to 16 MiB, of
/// 1 MiB up to 4 GiB, and of 16 MiB beyond: padding wastes at most about a sixteenth, a file takes few objects, and a
/// reader or writer of a file up to 4 GiB holds a few 1 MiB blocks at a time. The blocks are listed by manifests of at
/// most ``fanOut`` entries each, manifests of manifests above them, up to one root.
public struct FileLayout: Sendable, Equatable {
    /// Entries per manifest.
    public static let fanOut = 1_024
    /// The largest file cut into 64 KiB blocks, and into 1 MiB blocks: 16 MiB and 4 GiB.
    public static let mediumBlocksUpTo: Int64 = 1 << 24
    public static let largeBlocksUpTo: Int64 = 1 << 32
    /// The largest file that is one block: what a 64 KiB block holds.
    public static let singleBlockLimit = BlockTier.medium.capacity
    /// The largest file a reference may describe: 1 TiB.
    public static let maxSize: Int64 = 1 << 40
    /// The tier of every manifest but the root: one that holds a full manifest.
    public static let manifestTier = BlockTier.fitting(FileManifest.headerByteCount + fanOut * BlockID.byteCount)!

    public let size: Int64
    public let dataTier: BlockTier
    /// 0: the file is one data block; otherwise the root manifest's depth.
    public let depth: UInt8

    public init(size: Int64) throws(BlockError) {
        guard size >= 0, size <= FileLayout.maxSize else { throw BlockError(.badReference, "a file is 0 to 1 TiB; this one claims \(size) bytes") }
        self.size = size
        if size <= FileLayout.singleBlockLimit {
            dataTier = BlockTier.fitting(Int(size))!
            depth = 0
            return
        }
        dataTier = size <= FileLayout.mediumBlocksUpTo ? .medium : size <= FileLayout.largeBlocksUpTo ? .large : .huge
        var depth: UInt8 = 1
        var covered = Int64(dataTier.capacity) * Int64(FileLayout.fanOut)
        while covered < size {
            depth += 1
            covered *= Int64(FileLayout.fanOut)
        }
        self.depth = depth
    }

    /// How many data blocks the file takes.
    public var dataBlockCount: Int64 { Self.count(max(size, 1), per: Int64(dataTier.capacity)) }

    /// The file bytes a full block at `depth` covers: a data block's capacity at depth 0, times the fan-out per level.
    public func span(depth: UInt8) -> Int64 {
        var span = Int64(dataTier.capacity)
        for _ in 0..<depth { span *= Int64(FileLayout.fanOut) }
        return span
    }

    /// The tier the root is sealed at: the data tier for a file of one block, else the smallest that holds the root
    /// manifest, whose entry count follows from the size.
    public var rootTier: BlockTier {
        guard depth > 0 else { return dataTier }
        let entries = Self.count(size, per: span(depth: depth - 1))
        return BlockTier.fitting(FileManifest.headerByteCount + Int(entries) * BlockID.byteCount)!
    }

    static func count(_ size: Int64, per unit: Int64) -> Int64 { (size + unit - 1) / unit }
}

/// A sealed block, ready to store under its id.
public struct SealedBlock: Sendable, Equatable {
    public var id: BlockID
    public var bytes: [UInt8]

    public init(id: BlockID, bytes: [UInt8]) {
        self.id = id
        self.bytes = bytes
    }
}

/// What a message carries to let a member fetch and open a file (§16.4): its root block, the root's tier and depth,
/// the file's size and key. The name, type and SHA-256 of the file go beside it in the message.
public struct FileReference: Sendable, Equatable {
    public var root: BlockID
    public var rootTier: BlockTier
    public var key: FileKey
    public var layout: FileLayout

    public init(root: BlockID, rootTier: BlockTier, key: FileKey, layout: FileLayout) {
        self.root = root
        self.rootTier = rootTier
        self.key = key
        self.layout = layout
    }

    /// A reference as a message gives it, checked: the root's tier must be the one the size implies (§16.3).
    public init(root: BlockID, rootTier: BlockTier, key: FileKey, size: Int64) throws(BlockError) {
        let layout = try FileLayout(size: size)
        guard rootTier == layout.rootTier else {
            throw BlockError(.badReference, "a file of \(size) bytes has its root at tier \(layout.rootTier.rawValue), not \(rootTier.rawValue)")
        }
        self.init(root: root, rootTier: rootTier, key: key, layout: layout)
    }
}

/// A manifest's content (§16.3).
public struct FileManifest: Sendable, Equatable {
    /// "PCBL", version, depth, entry tier, flags, four reserved bytes, count, covered size.
    public static let headerByteCount = 24
    static let magic = Array("PCBL".utf8)
    static let version: UInt8 = 1

    /// 1 lists data blocks; n lists manifests of depth n − 1.
    public var depth: UInt8
    /// The tier of every block it lists.
    public var entryTier: BlockTier
    /// The file bytes under it.
    public var covered: Int64
    public var entries: [BlockID]

    /// The manifest's plaintext, before padding.
    public var plaintext: [UInt8] {
        var bytes = Self.magic + [Self.version, depth, entryTier.rawValue, 0, 0, 0, 0, 0]
        bytes += bigEndian(UInt64(entries.count), byteCount: 4)
        bytes += bigEndian(UInt64(covered), byteCount: 8)
        for entry in entries { bytes += entry.bytes }
        return bytes
    }

    /// Parses a manifest's padded plaintext: only its shape, not whether it fits the file (``FileReader``).
    public init(plaintext: [UInt8]) throws(BlockError) {
        guard plaintext.count >= Self.headerByteCount, Array(plaintext[0..<4]) == Self.magic else {
            throw BlockError(.badManifest, "a manifest starts with PCBL")
        }
        guard plaintext[4] == Self.version else { throw BlockError(.badManifest, "manifest version \(plaintext[4]) is not 1") }
        guard let tier = BlockTier(rawValue: plaintext[6]) else {
            throw BlockError(.badManifest, "a manifest names tier 2^\(plaintext[6]), which does not exist")
        }
        guard plaintext[7...11].allSatisfy({ $0 == 0 }) else { throw BlockError(.badManifest, "a manifest's flags and reserved bytes are zero") }
        let count = Int(readBigEndian(plaintext[12..<16]))
        let covered = readBigEndian(plaintext[16..<24])
        guard count >= 1, count <= FileLayout.fanOut else { throw BlockError(.badManifest, "a manifest lists 1 to 1,024 blocks, not \(count)") }
        guard plaintext.count >= Self.headerByteCount + count * BlockID.byteCount, covered <= UInt64(FileLayout.maxSize) else {
            throw BlockError(.badManifest, "a manifest claims more than it holds")
        }
        depth = plaintext[5]
        entryTier = tier
        self.covered = Int64(covered)
        entries = (0..<count).map { index in
            BlockID(bytes: plaintext[(Self.headerByteCount + index * BlockID.byteCount)..<(Self.headerByteCount + (index + 1) * BlockID.byteCount)])!
        }
    }

    public init(depth: UInt8, entryTier: BlockTier, covered: Int64, entries: [BlockID]) {
        self.depth = depth
        self.entryTier = entryTier
        self.covered = covered
        self.entries = entries
    }
}

/// Cuts a file into sealed blocks as its bytes come (§16.3): data blocks as they fill, then on ``finish()`` the last
/// one and the manifests. Keeps only the ids of the blocks made and one block's bytes.
public struct FileSealer: Sendable {
    public let layout: FileLayout
    let key: FileKey
    private var pending: [UInt8] = []
    private var received: Int64 = 0
    private var dataIDs: [BlockID] = []

    public init(size: Int64, key: FileKey) throws(BlockError) {
        layout = try FileLayout(size: size)
        self.key = key
        pending.reserveCapacity(layout.dataTier.capacity)
    }

    /// Takes the next bytes of the file; returns the data blocks they completed.
    public mutating func append(_ bytes: some Collection<UInt8>) throws(BlockError) -> [SealedBlock] {
        received += Int64(bytes.count)
        guard received <= layout.size else { throw BlockError(.badReference, "the file grew past the \(layout.size) bytes it was sealed as") }
        var blocks: [SealedBlock] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            // A full block is sealed once a byte comes after it: the last one, full or not, waits for finish().
            if pending.count == layout.dataTier.capacity { blocks.append(sealPending()) }
            let take = rest.prefix(layout.dataTier.capacity - pending.count)
            pending += take
            rest = rest.dropFirst(take.count)
        }
        return blocks
    }

    /// The last data block and every manifest, and the reference to the file.
    public mutating func finish() throws(BlockError) -> (blocks: [SealedBlock], reference: FileReference) {
        guard received == layout.size else { throw BlockError(.badReference, "the file ended at \(received) bytes, not the \(layout.size) it was sealed as") }
        var blocks = [sealPending()]
        guard layout.depth > 0 else { return (blocks, FileReference(root: blocks[0].id, rootTier: layout.dataTier, key: key, layout: layout)) }
        var level = dataIDs
        var root: (id: BlockID, tier: BlockTier)?
        for depth in 1...layout.depth {
            var next: [BlockID] = []
            let span = layout.span(depth: depth)
            for (index, start) in stride(from: 0, to: level.count, by: FileLayout.fanOut).enumerated() {
                let covered = min(span, layout.size - Int64(index) * span)
                let manifest = FileManifest(
                    depth: depth, entryTier: depth == 1 ? layout.dataTier : FileLayout.manifestTier, covered: covered,
                    entries: Array(level[start..<min(start + FileLayout.fanOut, level.count)]))
                let plaintext = manifest.plaintext
                let tier = depth == layout.depth ? BlockTier.fitting(plaintext.count)! : FileLayout.manifestTier
                let bytes = BlockSealing.seal(plaintext, tier: tier, key: key, place: BlockPlace(depth: depth, index: UInt64(index)))
                let block = SealedBlock(id: BlockID.of(bytes), bytes: bytes)
                blocks.append(block)
                next.append(block.id)
                root = (block.id, tier)
            }
            level = next
        }
        return (blocks, FileReference(root: root!.id, rootTier: root!.tier, key: key, layout: layout))
    }

    private mutating func sealPending() -> SealedBlock {
        let bytes = BlockSealing.seal(padding: &pending, tier: layout.dataTier, key: key, place: BlockPlace(depth: 0, index: UInt64(dataIDs.count)))
        let block = SealedBlock(id: BlockID.of(bytes), bytes: bytes)
        dataIDs.append(block.id)
        pending.removeAll(keepingCapacity: true)
        return block
    }
}

/// Opens a file's blocks as a reader fetches them (§16.5), checking each against the reference before it is used: a
/// manifest's depth, tier, count and sizes against what its parent promised, so that a hostile store can make a
/// reader do no more work than the reference's size allows.
public struct FileReader: Sendable {
    public let reference: FileReference
    public var layout: FileLayout { reference.layout }

    public init(_ reference: FileReference) { self.reference = reference }

    /// A block to fetch: its id, tier and place, and the file bytes under it.
    public struct Fetch: Sendable, Equatable {
        public var id: BlockID
        public var tier: BlockTier
        public var place: BlockPlace
        public var covered: Int64
    }

    /// The first block to fetch: the root.
    public var root: Fetch {
        Fetch(id: reference.root, tier: reference.rootTier, place: BlockPlace(depth: layout.depth, index: 0), covered: layout.size)
    }

    /// Opens a manifest fetched as `fetch`; returns the blocks it lists, each with its place and the bytes under it.
    public func manifest(_ stored: [UInt8], fetched fetch: Fetch) throws(BlockError) -> [Fetch] {
        let depth = fetch.place.depth
        guard depth >= 1 else { throw BlockError(.badManifest, "a data block is not a manifest") }
        let expectedTier = fetch.place == root.place ? reference.rootTier : FileLayout.manifestTier
        guard fetch.tier == expectedTier else { throw BlockError(.badManifest, "a manifest at depth \(depth) is sealed at tier \(expectedTier.byteCount)") }
        let manifest = try FileManifest(plaintext: BlockSealing.open(stored, id: fetch.id, tier: fetch.tier, key: reference.key, place: fetch.place))
        guard manifest.depth == depth else { throw BlockError(.badManifest, "a manifest fetched at depth \(depth) says depth \(manifest.depth)") }
        let childTier = depth == 1 ? layout.dataTier : FileLayout.manifestTier
        guard manifest.entryTier == childTier else { throw BlockError(.badManifest, "a manifest at depth \(depth) lists blocks of the wrong tier") }
        guard manifest.covered == fetch.covered else {
            throw BlockError(.badManifest, "a manifest claims \(manifest.covered) bytes where its parent promised \(fetch.covered)")
        }
        let span = layout.span(depth: depth - 1)
        guard Int64(manifest.entries.count) == FileLayout.count(max(fetch.covered, 1), per: span) else {
            throw BlockError(.badManifest, "a manifest of \(fetch.covered) bytes lists \(manifest.entries.count) blocks of \(span)")
        }
        guard !manifest.entries.contains(fetch.id) else { throw BlockError(.badManifest, "a manifest lists itself") }
        let first = fetch.place.index * UInt64(FileLayout.fanOut)
        return manifest.entries.enumerated().map { offset, id in
            Fetch(
                id: id, tier: childTier, place: BlockPlace(depth: depth - 1, index: first + UInt64(offset)),
                covered: min(span, fetch.covered - Int64(offset) * span))
        }
    }

    /// Opens a data block fetched as `fetch`: the file's bytes it holds, its padding left out.
    public func data(_ stored: [UInt8], fetched fetch: Fetch) throws(BlockError) -> ArraySlice<UInt8> {
        guard fetch.place.depth == 0, fetch.tier == layout.dataTier else { throw BlockError(.badManifest, "not a data block of this file") }
        let plaintext = try BlockSealing.open(stored, id: fetch.id, tier: fetch.tier, key: reference.key, place: fetch.place)
        return plaintext[..<Int(fetch.covered)]
    }
}

func bigEndian(_ value: UInt64, byteCount: Int) -> [UInt8] {
    (0..<byteCount).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * (byteCount - 1 - $0))) }
}

func readBigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}
