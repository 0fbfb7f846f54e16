import Crypto
import Foundation

/// How a file of a given size is cut into blocks (docs/PROTOCOL.md §16.3). Up to a 64 KiB block's capacity a file is
/// one data block of the smallest tier that holds it. A larger one is cut into data blocks of 64 KiB up to 16 MiB, of
/// 1 MiB up to 4 GiB, and of 16 MiB beyond: padding wastes at most about a sixteenth, a file takes few objects, and a
/// reader or writer of a file up to 4 GiB holds a few 1 MiB blocks at a time. The blocks are listed by manifests of at
/// most ``fanOut`` entries each, manifests of manifests above them, up to one root.
///
/// A **whitened** file (§16.7) stores each data block as two: the sealed block XOR a random block of its tier, and the
/// random block. Its depth-1 manifests list both ids of each, so they list at most ``whitenedFanOut`` entries (as do its
/// other manifests, one fan-out per file), and it always has a root manifest, even for one data block.
public struct FileLayout: Sendable, Equatable {
    /// Entries per manifest.
    public static let fanOut = 1_024
    /// Entries per manifest of a whitened file: a depth-1 entry is two ids.
    public static let whitenedFanOut = 512
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
    /// Whether each data block is stored whitened (§16.7).
    public let whitened: Bool

    public init(size: Int64, whitened: Bool = false) throws(BlockError) {
        guard size >= 0, size <= FileLayout.maxSize else { throw BlockError(.badReference, "a file is 0 to 1 TiB; this one claims \(size) bytes") }
        self.size = size
        self.whitened = whitened
        if size <= FileLayout.singleBlockLimit {
            dataTier = BlockTier.fitting(Int(size))!
            // A whitened block's two halves are named by a manifest: even one block has a root above it.
            depth = whitened ? 1 : 0
            return
        }
        dataTier = size <= FileLayout.mediumBlocksUpTo ? .medium : size <= FileLayout.largeBlocksUpTo ? .large : .huge
        let fanOut = Int64(whitened ? FileLayout.whitenedFanOut : FileLayout.fanOut)
        var depth: UInt8 = 1
        var covered = Int64(dataTier.capacity) * fanOut
        while covered < size {
            depth += 1
            covered *= fanOut
        }
        self.depth = depth
    }

    /// Entries per manifest of this file.
    public var fanOut: Int { whitened ? FileLayout.whitenedFanOut : FileLayout.fanOut }

    /// The bytes of one entry of a manifest at `depth`: two ids for a whitened file's data blocks, else one.
    public func entryByteCount(depth: UInt8) -> Int { whitened && depth == 1 ? 2 * BlockID.byteCount : BlockID.byteCount }

    /// How many data blocks the file takes.
    public var dataBlockCount: Int64 { Self.count(max(size, 1), per: Int64(dataTier.capacity)) }

    /// The file bytes a full block at `depth` covers: a data block's capacity at depth 0, times the fan-out per level.
    public func span(depth: UInt8) -> Int64 {
        var span = Int64(dataTier.capacity)
        for _ in 0..<depth { span *= Int64(fanOut) }
        return span
    }

    /// The tier the root is sealed at: the data tier for a file of one block, else the smallest that holds the root
    /// manifest, whose entry count follows from the size.
    public var rootTier: BlockTier {
        guard depth > 0 else { return dataTier }
        let entries = Self.count(max(size, 1), per: span(depth: depth - 1))
        return BlockTier.fitting(FileManifest.headerByteCount + Int(entries) * entryByteCount(depth: depth))!
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
    public init(root: BlockID, rootTier: BlockTier, key: FileKey, size: Int64, whitened: Bool = false) throws(BlockError) {
        let layout = try FileLayout(size: size, whitened: whitened)
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
    /// For a whitened file's depth-1 manifest (flag 1), each entry's random block, which the entry's stored block is
    /// XORed with (§16.7); empty otherwise.
    public var randomizers: [BlockID] = []

    /// The manifest's plaintext, before padding.
    public var plaintext: [UInt8] {
        let whitened = !randomizers.isEmpty
        var bytes = Self.magic + [Self.version, depth, entryTier.rawValue, whitened ? 1 : 0, 0, 0, 0, 0]
        bytes += bigEndian(UInt64(entries.count), byteCount: 4)
        bytes += bigEndian(UInt64(covered), byteCount: 8)
        for (index, entry) in entries.enumerated() {
            bytes += entry.bytes
            if whitened { bytes += randomizers[index].bytes }
        }
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
        guard plaintext[7] <= 1, plaintext[8...11].allSatisfy({ $0 == 0 }) else {
            throw BlockError(.badManifest, "a manifest's flags are 0 or 1 and its reserved bytes zero")
        }
        let whitened = plaintext[7] == 1
        let count = Int(readBigEndian(plaintext[12..<16]))
        let covered = readBigEndian(plaintext[16..<24])
        guard count >= 1, count <= FileLayout.fanOut else { throw BlockError(.badManifest, "a manifest lists 1 to 1,024 blocks, not \(count)") }
        let entryBytes = whitened ? 2 * BlockID.byteCount : BlockID.byteCount
        guard plaintext.count >= Self.headerByteCount + count * entryBytes, covered <= UInt64(FileLayout.maxSize) else {
            throw BlockError(.badManifest, "a manifest claims more than it holds")
        }
        depth = plaintext[5]
        entryTier = tier
        self.covered = Int64(covered)
        func id(_ index: Int, _ half: Int) -> BlockID {
            let start = Self.headerByteCount + index * entryBytes + half * BlockID.byteCount
            return BlockID(bytes: plaintext[start..<(start + BlockID.byteCount)])!
        }
        entries = (0..<count).map { id($0, 0) }
        randomizers = whitened ? (0..<count).map { id($0, 1) } : []
    }

    public init(depth: UInt8, entryTier: BlockTier, covered: Int64, entries: [BlockID], randomizers: [BlockID] = []) {
        precondition(randomizers.isEmpty || randomizers.count == entries.count, "a whitened manifest names a random block for every entry")
        self.depth = depth
        self.entryTier = entryTier
        self.covered = covered
        self.entries = entries
        self.randomizers = randomizers
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
    /// The random blocks of a whitened file's data blocks, in order.
    private var randomizerIDs: [BlockID] = []
    /// What a whitened file's random blocks are drawn from: AES-GCM over zeros under a key the caller makes at random
    /// and never keeps (a keystream as fast as sealing, and as unpredictable as the key).
    private let randomizerKey: SymmetricKey?

    /// - Parameter whitening: to store each data block whitened (§16.7, twice the blocks and bytes), a fresh random
    ///   key its random blocks are drawn under, never kept; `nil` for a file stored plainly.
    public init(size: Int64, key: FileKey, whitening: FileKey? = nil) throws(BlockError) {
        layout = try FileLayout(size: size, whitened: whitening != nil)
        self.key = key
        randomizerKey = whitening.map { SymmetricKey(data: $0.bytes) }
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
            if pending.count == layout.dataTier.capacity { blocks += sealPending() }
            let take = rest.prefix(layout.dataTier.capacity - pending.count)
            pending += take
            rest = rest.dropFirst(take.count)
        }
        return blocks
    }

    /// The last data block and every manifest, and the reference to the file.
    public mutating func finish() throws(BlockError) -> (blocks: [SealedBlock], reference: FileReference) {
        guard received == layout.size else { throw BlockError(.badReference, "the file ended at \(received) bytes, not the \(layout.size) it was sealed as") }
        var blocks = sealPending()
        guard layout.depth > 0 else { return (blocks, FileReference(root: blocks[0].id, rootTier: layout.dataTier, key: key, layout: layout)) }
        var level = dataIDs
        var root: (id: BlockID, tier: BlockTier)?
        let fanOut = layout.fanOut
        for depth in 1...layout.depth {
            var next: [BlockID] = []
            let span = layout.span(depth: depth)
            for (index, start) in stride(from: 0, to: level.count, by: fanOut).enumerated() {
                let covered = min(span, layout.size - Int64(index) * span)
                let end = min(start + fanOut, level.count)
                let manifest = FileManifest(
                    depth: depth, entryTier: depth == 1 ? layout.dataTier : FileLayout.manifestTier, covered: covered,
                    entries: Array(level[start..<end]), randomizers: depth == 1 && layout.whitened ? Array(randomizerIDs[start..<end]) : [])
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

    /// The next data block: sealed, or for a whitened file its whitened form then its random block.
    private mutating func sealPending() -> [SealedBlock] {
        let place = BlockPlace(depth: 0, index: UInt64(dataIDs.count))
        var bytes = BlockSealing.seal(padding: &pending, tier: layout.dataTier, key: key, place: place)
        pending.removeAll(keepingCapacity: true)
        guard let randomizerKey else {
            let block = SealedBlock(id: BlockID.of(bytes), bytes: bytes)
            dataIDs.append(block.id)
            return [block]
        }
        let random = BlockWhitening.randomBlock(tier: layout.dataTier, key: randomizerKey, place: place)
        BlockWhitening.xor(&bytes, random)
        let whitened = SealedBlock(id: BlockID.of(bytes), bytes: bytes)
        let randomizer = SealedBlock(id: BlockID.of(random), bytes: random)
        dataIDs.append(whitened.id)
        randomizerIDs.append(randomizer.id)
        return [whitened, randomizer]
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
        /// For a whitened data block, its random block (of the same tier), fetched too and XORed with it.
        public var randomizer: BlockID?

        /// The random block, to fetch as a block of its own.
        public var randomizerFetch: Fetch? {
            randomizer.map { Fetch(id: $0, tier: tier, place: place, covered: covered) }
        }
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
        let whitened = layout.whitened && depth == 1
        guard manifest.randomizers.isEmpty != whitened else {
            throw BlockError(.badManifest, "a manifest at depth \(depth) of \(layout.whitened ? "a whitened" : "an unwhitened") file has the wrong flag")
        }
        let span = layout.span(depth: depth - 1)
        guard Int64(manifest.entries.count) == FileLayout.count(max(fetch.covered, 1), per: span), manifest.entries.count <= layout.fanOut else {
            throw BlockError(.badManifest, "a manifest of \(fetch.covered) bytes lists \(manifest.entries.count) blocks of \(span)")
        }
        guard !manifest.entries.contains(fetch.id), !manifest.randomizers.contains(fetch.id) else { throw BlockError(.badManifest, "a manifest lists itself") }
        let first = fetch.place.index * UInt64(layout.fanOut)
        return manifest.entries.enumerated().map { offset, id in
            Fetch(
                id: id, tier: childTier, place: BlockPlace(depth: depth - 1, index: first + UInt64(offset)),
                covered: min(span, fetch.covered - Int64(offset) * span), randomizer: whitened ? manifest.randomizers[offset] : nil)
        }
    }

    /// Opens a data block fetched as `fetch`: the file's bytes it holds, its padding left out. A whitened block needs
    /// its random block too (``Fetch/randomizerFetch``): each is checked against its id, then their XOR is opened.
    public func data(_ stored: [UInt8], randomizer: [UInt8]? = nil, fetched fetch: Fetch) throws(BlockError) -> ArraySlice<UInt8> {
        guard fetch.place.depth == 0, fetch.tier == layout.dataTier else { throw BlockError(.badManifest, "not a data block of this file") }
        guard let randomizerID = fetch.randomizer else {
            let plaintext = try BlockSealing.open(stored, id: fetch.id, tier: fetch.tier, key: reference.key, place: fetch.place)
            return plaintext[..<Int(fetch.covered)]
        }
        guard let randomizer else { throw BlockError(.badManifest, "a whitened data block opens only with its random block") }
        try BlockSealing.check(stored, id: fetch.id, tier: fetch.tier)
        try BlockSealing.check(randomizer, id: randomizerID, tier: fetch.tier)
        var sealed = stored
        BlockWhitening.xor(&sealed, randomizer)
        let plaintext = try BlockSealing.open(checked: sealed, id: fetch.id, tier: fetch.tier, key: reference.key, place: fetch.place)
        return plaintext[..<Int(fetch.covered)]
    }
}

func bigEndian(_ value: UInt64, byteCount: Int) -> [UInt8] {
    (0..<byteCount).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * (byteCount - 1 - $0))) }
}

func readBigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    bytes.reduce(0) { $0 << 8 | UInt64($1) }
}

/// XOR whitening (§16.7): a whitened data block is stored as its sealed bytes XOR a random block of its tier, and the
/// random block, so that no stored block is the sealed block, let alone the file.
public enum BlockWhitening {
    /// A random block of `tier` for the data block at `place`: AES-256-GCM over zeros under `key` at the place's nonce
    /// (ciphertext and tag: exactly the tier's length).
    static func randomBlock(tier: BlockTier, key: SymmetricKey, place: BlockPlace) -> [UInt8] {
        let zeros = [UInt8](repeating: 0, count: tier.capacity)
        let box = try! AES.GCM.seal(zeros, using: key, nonce: AES.GCM.Nonce(data: place.nonce))
        let combined = box.combined!
        return [UInt8](unsafeUninitializedCapacity: tier.byteCount) { buffer, count in
            count = combined.dropFirst(place.nonce.count).copyBytes(to: buffer)
        }
    }

    /// `bytes` XOR `other` (of the same length), in place, eight bytes at a time.
    public static func xor(_ bytes: inout [UInt8], _ other: [UInt8]) {
        precondition(bytes.count == other.count, "whitening XORs blocks of one tier")
        bytes.withUnsafeMutableBytes { target in
            other.withUnsafeBytes { source in
                let words = target.count / 8
                for index in 0..<words {
                    let value =
                        target.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self) ^ source.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)
                    target.storeBytes(of: value, toByteOffset: index * 8, as: UInt64.self)
                }
                for index in (words * 8)..<target.count { target[index] ^= source[index] }
            }
        }
    }
}
