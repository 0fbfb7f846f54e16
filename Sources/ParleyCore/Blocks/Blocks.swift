import Crypto
import Foundation

/// The sizes a stored block comes in (docs/PROTOCOL.md §16.1): every stored block is exactly one of these long, so
/// a block tells nothing of the file but which tier it is.
public enum BlockTier: UInt8, CaseIterable, Sendable, Comparable {
    case small = 10
    case medium = 16
    case large = 20
    case huge = 24

    /// The stored block's length: 1 KiB, 64 KiB, 1 MiB or 16 MiB.
    public var byteCount: Int { 1 << Int(rawValue) }

    /// The plaintext one block holds: all but the AEAD tag.
    public var capacity: Int { byteCount - BlockSealing.tagByteCount }

    /// The smallest tier whose block holds `count` plaintext bytes, if any does.
    public static func fitting(_ count: Int) -> BlockTier? { allCases.first { $0.capacity >= count } }

    public static func < (lhs: BlockTier, rhs: BlockTier) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Why a block, a manifest or a file reference is refused.
public struct BlockError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The stored bytes do not hash to the id they were fetched by.
        case idMismatch = "block_id_mismatch"
        /// The block is not exactly its tier's length.
        case wrongLength = "block_wrong_length"
        /// The block does not open under the file's key at its place: altered, or from another file or place.
        case decryptFailed = "block_decrypt_failed"
        /// A manifest that breaks §16.3: bad magic or version, a tier that does not exist, a depth or count out of
        /// bounds, sizes that do not add up, an entry naming the manifest itself.
        case badManifest = "bad_manifest"
        /// A file reference that breaks §16.4.
        case badReference = "bad_file_reference"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// A block's id: the SHA-256 of its stored bytes.
public struct BlockID: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == BlockID.byteCount else { return nil }
        self.bytes = Array(bytes)
    }

    /// From 64 lowercase hex digits.
    public init?(hex: String) {
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
            let bytes = Hex.decode(hex)
        else { return nil }
        self.bytes = bytes
    }

    /// The id of `stored`.
    public static func of(_ stored: some DataProtocol) -> BlockID { BlockID(bytes: Array(SHA256.hash(data: stored)))! }

    /// Lowercase hex: the block's name in a bucket (`rooms/{room}/blocks/{hex}`).
    public var hex: String { Hex.encode(bytes) }

    public var description: String { hex }
}

/// A file's key (§16.2): 32 random bytes carried in the message that shares the file, from which the key every one of
/// its blocks is sealed with is derived.
public struct FileKey: Sendable, Equatable {
    public static let byteCount = 32
    public let bytes: [UInt8]
    let aeadKey: SymmetricKey

    public init(bytes: [UInt8]) throws(BlockError) {
        guard bytes.count == FileKey.byteCount else { throw BlockError(.badReference, "a file key is 32 bytes, not \(bytes.count)") }
        self.bytes = bytes
        aeadKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: bytes), salt: [UInt8](), info: Array("parley.file.block.v1".utf8), outputByteCount: 32)
    }

    public static func == (lhs: FileKey, rhs: FileKey) -> Bool { lhs.bytes == rhs.bytes }

    /// A fresh random key.
    public static func random(using generator: inout some RandomNumberGenerator) -> FileKey {
        try! FileKey(bytes: randomBytes(byteCount, using: &generator))
    }
}

/// Where a block stands in its file, which its nonce spells (§16.2): a block moved to another place does not open.
public struct BlockPlace: Hashable, Sendable {
    /// 0 for data blocks; a manifest's depth (1 lists data blocks, 2 lists depth-1 manifests, …).
    public var depth: UInt8
    /// The block's index among the blocks of its depth, from 0.
    public var index: UInt64

    public init(depth: UInt8, index: UInt64) {
        self.depth = depth
        self.index = index
    }

    /// The block's AES-GCM nonce, 12 bytes: the depth, three zero bytes, the index big-endian.
    public var nonce: [UInt8] {
        var nonce = [depth, 0, 0, 0]
        for shift in stride(from: 56, through: 0, by: -8) { nonce.append(UInt8(truncatingIfNeeded: index >> UInt64(shift))) }
        return nonce
    }
}

/// Sealing and opening one block (§16.2).
public enum BlockSealing {
    public static let tagByteCount = 16

    /// `plaintext` (at most the tier's capacity) padded with zeros to the capacity, sealed with AES-256-GCM under the
    /// file's key at `place`: exactly `tier.byteCount` bytes.
    public static func seal(_ plaintext: some Collection<UInt8>, tier: BlockTier, key: FileKey, place: BlockPlace) -> [UInt8] {
        precondition(plaintext.count <= tier.capacity, "a block's plaintext exceeds its tier")
        var padded = [UInt8](plaintext)
        return seal(padding: &padded, tier: tier, key: key, place: place)
    }

    /// ``seal(_:tier:key:place:)`` padding `plaintext` in place (its capacity reserved, no copy); it is left padded.
    static func seal(padding plaintext: inout [UInt8], tier: BlockTier, key: FileKey, place: BlockPlace) -> [UInt8] {
        plaintext.append(contentsOf: repeatElement(0, count: tier.capacity - plaintext.count))
        let box = try! AES.GCM.seal(plaintext, using: key.aeadKey, nonce: AES.GCM.Nonce(data: place.nonce))
        // The box holds nonce ‖ ciphertext ‖ tag: the stored block is all but the nonce, copied once.
        let combined = box.combined!
        return [UInt8](unsafeUninitializedCapacity: tier.byteCount) { buffer, count in
            count = combined.dropFirst(place.nonce.count).copyBytes(to: buffer)
        }
    }

    /// The padded plaintext of a stored block fetched by `id`, after checking its length, its id, then its seal.
    public static func open(_ stored: [UInt8], id: BlockID, tier: BlockTier, key: FileKey, place: BlockPlace) throws(BlockError) -> [UInt8] {
        try check(stored, id: id, tier: tier)
        return try open(checked: stored, id: id, tier: tier, key: key, place: place)
    }

    /// Checks that bytes fetched as block `id` are its tier's length and hash to `id`.
    public static func check(_ stored: [UInt8], id: BlockID, tier: BlockTier) throws(BlockError) {
        guard stored.count == tier.byteCount else {
            throw BlockError(.wrongLength, "block \(id.hex.prefix(16))… is \(stored.count) bytes; its tier holds \(tier.byteCount)")
        }
        guard BlockID.of(stored) == id else { throw BlockError(.idMismatch, "the bytes fetched as block \(id.hex.prefix(16))… hash to another id") }
    }

    /// Opens sealed bytes of `tier`'s length at `place`, checked already (or made from checked blocks: a whitened one);
    /// `id` names them in errors.
    static func open(checked stored: [UInt8], id: BlockID, tier: BlockTier, key: FileKey, place: BlockPlace) throws(BlockError) -> [UInt8] {
        do {
            let box = try AES.GCM.SealedBox(
                nonce: AES.GCM.Nonce(data: place.nonce), ciphertext: stored[..<tier.capacity], tag: stored[tier.capacity...])
            return Array(try AES.GCM.open(box, using: key.aeadKey))
        } catch {
            throw BlockError(.decryptFailed, "block \(id.hex.prefix(16))… does not open under this file's key at its place")
        }
    }
}
