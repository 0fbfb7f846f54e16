import Crypto
import ParleyBucket
import ParleyCore

/// What a joiner needs to find and trust a bucket room: the bucket, the room, and a fingerprint of the creator's
/// signing key (so a metadata.json replaced in the bucket is caught).
///
/// Text form: `parley-invite:` followed by unpadded base64url of the canonical JSON
/// `{"bucket":URL,"creator":FINGERPRINT,"room_id":ROOM,"v":1}` (docs/PROTOCOL.md §13.5).
public struct InviteCode: Sendable, Equatable {
    public static let prefix = "parley-invite:"

    public var bucket: BucketURL
    public var roomID: String
    /// Lowercase hex SHA-256 of the creator's raw Ed25519 public key.
    public var creatorFingerprint: String
    /// The 32-byte secret of a pre-shared-key room whose key is not derived from a passphrase.
    public var preSharedSecret: [UInt8]?
    /// Whether the room is a pre-shared-key room whose secret comes from a passphrase the joiner must know.
    public var needsPassphrase = false

    public init(bucket: BucketURL, roomID: String, creatorFingerprint: String, preSharedSecret: [UInt8]? = nil, needsPassphrase: Bool = false) {
        self.bucket = bucket
        self.roomID = roomID
        self.creatorFingerprint = creatorFingerprint
        self.preSharedSecret = preSharedSecret
        self.needsPassphrase = needsPassphrase
    }

    /// The fingerprint of a base64 signing key.
    public static func fingerprint(ofKey key: String) -> String? {
        Base64.decode(key).map { Hex.encode(SHA256.hash(data: $0)) }
    }

    public var text: String {
        var json = JSONObject([
            "bucket": .string(bucket.text), "creator": .string(creatorFingerprint), "room_id": .string(roomID), "v": .integer(1),
        ])
        if let preSharedSecret { json["psk"] = .string(Base64.encode(preSharedSecret)) }
        if needsPassphrase { json["psk_passphrase"] = .bool(true) }
        return CodeText.encode(prefix: InviteCode.prefix, json)
    }

    /// Whether `text` looks like an invite code rather than a room id.
    public static func looksLikeCode(_ text: String) -> Bool { text.hasPrefix(prefix) }

    /// Parses and checks an invite code.
    public init(parsing text: String) throws(ClientError) {
        let invalid = ClientError(.invalidArgument, "This is not a valid Parley invite code.", remedy: "Ask for the code again; it starts with \(InviteCode.prefix)")
        guard let object = CodeText.decode(prefix: InviteCode.prefix, text, maxBytes: 3072), object["v"] == .integer(1),
            let bucketText = object["bucket"]?.stringValue,
            let roomID = object["room_id"]?.stringValue, let creator = object["creator"]?.stringValue
        else { throw invalid }
        guard Identifier.problem(with: roomID, kind: .room) == nil, Hex.isLowercaseHex(creator, byteCount: 32) else { throw invalid }
        do {
            bucket = try BucketURL(bucketText)
        } catch {
            throw ClientError(.invalidArgument, "The invite code names an unusable bucket: \(error.message)")
        }
        self.roomID = roomID
        creatorFingerprint = creator
        if let secret = object["psk"] {
            guard let bytes = secret.stringValue.flatMap(Base64.decode), bytes.count == 32 else { throw invalid }
            preSharedSecret = bytes
        }
        needsPassphrase = object["psk_passphrase"] == .bool(true)
    }
}

/// The text form of the codes people pass between devices (invite, link request, link): a prefix naming the kind, then
/// unpadded base64url (RFC 4648 §5) of a canonical JSON object, so a code survives being pasted into a shell or a URL.
enum CodeText {
    static func encode(prefix: String, _ object: JSONObject) -> String {
        let base64 = Base64.encode(CanonicalJSON.encode(.object(object)))
        return prefix + String(base64.compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }

    /// The object a code carries, or `nil` when `text` is not a code of this kind or holds more than `maxBytes`.
    static func decode(prefix: String, _ text: String, maxBytes: Int) -> JSONObject? {
        guard text.hasPrefix(prefix), text.utf8.count - prefix.utf8.count <= (maxBytes + 2) / 3 * 4 else { return nil }
        let body = text.dropFirst(prefix.count)
        // One spelling per code: the standard alphabet's `+` and `/`, and padding, are not base64url.
        guard !body.contains(where: { $0 == "+" || $0 == "/" || $0 == "=" }) else { return nil }
        var base64 = String(body.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard let bytes = Base64.decode(base64) else { return nil }
        return (try? JSONParser().parse(bytes))?.objectValue
    }
}
