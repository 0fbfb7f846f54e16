import Crypto

/// A LAN announcement (docs/PROTOCOL.md §17.9): a node that opts in tells its link, by multicast, the UDP port it
/// listens on and a tag per peer room it holds. A tag names no room in clear: it is a MAC, under a key that only
/// holders of the room's create event (and, in a pre-shared-key room, of its secret) can derive, of this
/// announcement's port, time and nonce; another announcement's tags for the same room look unrelated.
///
/// `magic "PRLA" (4) ‖ version 1 (1) ‖ port (2) ‖ sent_ms (8) ‖ nonce (12) ‖ count (1, 1–128) ‖ count × tag (8)`.
/// Announcements are not signed: they only say where to try a sync, and everything that follows is (§17.1).
public struct PeerAnnouncement: Equatable, Sendable {
    public static let magic: [UInt8] = Array("PRLA".utf8)
    public static let version: UInt8 = 1
    public static let tagBytes = 8
    public static let maxTags = 128
    static let headerBytes = 4 + 1 + 2 + 8 + 12 + 1
    /// The MAC input's domain-separation prefix: `parley.peer.announce.v1` and LF.
    static let tagPrefix: [UInt8] = Array("parley.peer.announce.v1\n".utf8)

    public var port: UInt16
    public var sentMs: UInt64
    public var nonce: [UInt8]
    public var tags: [[UInt8]]

    public init(port: UInt16, sentMs: UInt64, nonce: [UInt8], tags: [[UInt8]]) {
        precondition(nonce.count == PeerDatagram.nonceBytes && (1...Self.maxTags).contains(tags.count))
        self.port = port
        self.sentMs = sentMs
        self.nonce = nonce
        self.tags = tags
    }

    /// An announcement of the rooms whose keys are `roomKeys`, its tags in a random order (the driver shuffles the keys).
    public init(port: UInt16, sentMs: UInt64, nonce: [UInt8], roomKeys: [SymmetricKey]) {
        self.init(port: port, sentMs: sentMs, nonce: nonce, tags: roomKeys.map { Self.tag(key: $0, port: port, sentMs: sentMs, nonce: nonce) })
    }

    public var encoded: [UInt8] {
        var out = Self.magic + [Self.version, UInt8(port >> 8), UInt8(port & 0xFF)]
        out += (0..<8).map { UInt8(truncatingIfNeeded: sentMs >> UInt64(56 - $0 * 8)) }
        out += nonce
        out.append(UInt8(tags.count))
        return out + tags.joined()
    }

    /// Reads an announcement's form.
    /// - Throws: ``PeerDatagramError`` `malformed` for anything else.
    public init(parsing bytes: [UInt8]) throws(PeerDatagramError) {
        guard bytes.count >= Self.headerBytes, Array(bytes[0..<4]) == Self.magic, bytes[4] == Self.version else {
            throw PeerDatagramError(.malformed, "not a Parley announcement")
        }
        let count = Int(bytes[Self.headerBytes - 1])
        guard (1...Self.maxTags).contains(count), bytes.count == Self.headerBytes + count * Self.tagBytes else {
            throw PeerDatagramError(.malformed, "an announcement's tags do not match its count")
        }
        port = UInt16(bytes[5]) << 8 | UInt16(bytes[6])
        sentMs = bytes[7..<15].reduce(0) { $0 << 8 | UInt64($1) }
        nonce = Array(bytes[15..<27])
        tags = (0..<count).map { Array(bytes[Self.headerBytes + $0 * Self.tagBytes..<Self.headerBytes + ($0 + 1) * Self.tagBytes]) }
    }

    /// The room's announcement key: HKDF-SHA256 with the create event's hash (as events carry it, UTF-8) followed by
    /// the pre-shared room key when there is one as input, salt `parley.peer.discovery.v1`, info the room id; 32 bytes.
    public static func roomKey(createHash: String, preSharedRoomKey: [UInt8]?, roomID: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(createHash.utf8) + (preSharedRoomKey ?? [])), salt: Array("parley.peer.discovery.v1".utf8),
            info: Array(roomID.utf8), outputByteCount: 32)
    }

    /// A room's tag: the first 8 bytes of HMAC-SHA256 under its key of the prefix, port, sent ms and nonce.
    public static func tag(key: SymmetricKey, port: UInt16, sentMs: UInt64, nonce: [UInt8]) -> [UInt8] {
        var input = tagPrefix + [UInt8(port >> 8), UInt8(port & 0xFF)]
        input += (0..<8).map { UInt8(truncatingIfNeeded: sentMs >> UInt64(56 - $0 * 8)) }
        input += nonce
        return Array(HMAC<SHA256>.authenticationCode(for: input, using: key).prefix(tagBytes))
    }

    /// Whether the announcement carries the tag of the room whose key is `key`.
    public func names(roomKey key: SymmetricKey) -> Bool {
        let expected = Self.tag(key: key, port: port, sentMs: sentMs, nonce: nonce)
        // Compared in constant time, as any MAC.
        return tags.contains { tag in zip(tag, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0 }
    }
}
