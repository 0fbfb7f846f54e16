import Crypto

/// What a joiner needs to find and trust a room: where it can be fetched, which room it is, and a fingerprint of the
/// creator's signing key, so a founding event replaced wherever the room is kept is caught (docs/PROTOCOL.md §13.5).
/// The code grants nothing: the room's state decides whether the joiner is invited.
///
/// Text form: `parley-invite:` followed by unpadded base64url of the canonical JSON
/// `{"creator":FINGERPRINT,"locations":[LOCATION…],"room_id":ROOM,"v":2}`, with `psk` or `psk_passphrase` for a
/// pre-shared-key room. Version 1, `{"bucket":URL,"creator":…,"room_id":…,"v":1}`, which earlier versions wrote, is
/// still read, as a code whose one location is that bucket.
public struct InviteCode: Sendable, Equatable {
    public static let prefix = "parley-invite:"
    /// The version written.
    public static let version: Int64 = 2
    /// The largest object a code may decode to, in bytes: room for ``RoomLocation/maxCount`` locations of
    /// ``RoomLocation/maxBytes`` and the other members.
    public static let maxBytes = 20_480

    public var roomID: String
    /// Lowercase hex SHA-256 of the creator's raw Ed25519 public key.
    public var creatorFingerprint: String
    /// Where the room can be fetched, in the order the writer prefers: 1 to ``RoomLocation/maxCount`` of them.
    public var locations: [RoomLocation]
    /// The 32-byte secret of a pre-shared-key room whose key is not derived from a passphrase.
    public var preSharedSecret: [UInt8]?
    /// Whether the room is a pre-shared-key room whose secret comes from a passphrase the joiner must know.
    public var needsPassphrase: Bool

    public init(
        roomID: String, creatorFingerprint: String, locations: [RoomLocation], preSharedSecret: [UInt8]? = nil, needsPassphrase: Bool = false
    ) {
        self.roomID = roomID
        self.creatorFingerprint = creatorFingerprint
        self.locations = locations
        self.preSharedSecret = preSharedSecret
        self.needsPassphrase = needsPassphrase
    }

    /// The fingerprint of a base64 signing key, or `nil` when `key` is not base64.
    public static func fingerprint(ofKey key: String) -> String? {
        Base64.decode(key).map { Hex.encode(SHA256.hash(data: $0)) }
    }

    /// Whether `text` looks like an invite code rather than a room id.
    public static func looksLikeCode(_ text: String) -> Bool { text.hasPrefix(prefix) }

    /// The code's text, in the current version.
    public var text: String {
        precondition((1...RoomLocation.maxCount).contains(locations.count), "an invite code lists 1 to \(RoomLocation.maxCount) locations")
        var json = JSONObject([
            "creator": .string(creatorFingerprint), "locations": .array(locations.map(\.json)), "room_id": .string(roomID),
            "v": .integer(Self.version),
        ])
        if let preSharedSecret { json["psk"] = .string(Base64.encode(preSharedSecret)) }
        if needsPassphrase { json["psk_passphrase"] = .bool(true) }
        return CodeText.encode(prefix: Self.prefix, json)
    }

    /// Reads an invite code of version 1 or 2 and checks every member. Members it does not know are ignored.
    /// - Throws: ``CodeError`` naming the first rule the code breaks.
    public init(parsing text: String) throws(CodeError) {
        let object = try CodeText.decode(prefix: Self.prefix, text, maxBytes: Self.maxBytes)
        guard case .integer(let version)? = object["v"], version == 1 || version == 2 else {
            throw CodeError(.unsupportedVersion, "The invite code is of \(Self.describeVersion(object["v"])); this reader knows versions 1 and 2.")
        }
        (roomID, creatorFingerprint) = try Self.roomAndCreator(object)
        switch object["psk"] {
        case nil: preSharedSecret = nil
        case .string(let secret)?:
            guard let bytes = Base64.decode(secret), bytes.count == 32 else { throw CodeError(.invalidMember, "psk is not base64 of 32 bytes.") }
            preSharedSecret = bytes
        default: throw CodeError(.invalidMember, "psk is not a string.")
        }
        switch object["psk_passphrase"] {
        case nil: needsPassphrase = false
        case .bool(let value)?: needsPassphrase = value
        default: throw CodeError(.invalidMember, "psk_passphrase is not true or false.")
        }
        guard preSharedSecret == nil || !needsPassphrase else {
            throw CodeError(.invalidMember, "The invite code gives both a secret (psk) and that the secret comes from a passphrase.")
        }
        locations = version == 1 ? [try Self.versionOneBucket(object)] : try RoomLocation.list(json: object["locations"])
    }

    /// `v` in words, for the error about a version this reader does not know.
    static func describeVersion(_ value: JSONValue?) -> String {
        switch value {
        case .integer(let version)?: "version \(version)"
        case nil: "no version (v is missing)"
        default: "no version (v is not an integer)"
        }
    }

    /// The `room_id` and `creator` members every code that names a room carries.
    static func roomAndCreator(_ object: JSONObject) throws(CodeError) -> (roomID: String, creator: String) {
        guard case .string(let roomID)? = object["room_id"], Identifier.problem(with: roomID, kind: .room) == nil else {
            throw CodeError(.invalidMember, "room_id is missing or not a valid room id.")
        }
        guard case .string(let creator)? = object["creator"], Hex.isLowercaseHex(creator, byteCount: 32) else {
            throw CodeError(.invalidMember, "creator is missing or not 64 lowercase hex digits.")
        }
        return (roomID, creator)
    }

    /// The one location of a version 1 form: its `bucket` member, checked as a bucket location's URL.
    static func versionOneBucket(_ object: JSONObject) throws(CodeError) -> RoomLocation {
        guard case .string(let url)? = object["bucket"] else { throw CodeError(.invalidMember, "bucket is missing or not a string.") }
        return try RoomLocation(json: ["kind": "bucket", "url": .string(url)])
    }
}
