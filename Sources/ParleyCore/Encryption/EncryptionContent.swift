import Crypto
import Foundation

/// Who may read a room's earlier epochs (docs/PROTOCOL.md §14.1).
public enum HistoryVisibility: String, Sendable, Equatable, CaseIterable {
    /// A new member device receives the keys of every earlier epoch.
    case shared
    /// A new member device receives keys from its invite or join on (the default for direct messages).
    case joined
}

/// How a room's content is encrypted, from its `m.room.encryption` event. Set once; it never changes.
public struct EncryptionSettings: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        /// Epoch keys, sealed to each member device with HPKE in `m.room.key` events.
        case epochs = "parley.epochs.v1"
        /// One key derived from a secret carried in the invite code.
        case preShared = "parley.psk.v1"
    }

    public static let defaultRotationPeriodMs: Int64 = 7 * 24 * 3_600_000
    public static let minRotationPeriodMs: Int64 = 60_000

    public var mode: Mode
    public var history: HistoryVisibility
    /// For `preShared`: the id of the room key, so every node can check content names the room's key.
    public var keyID: String?
    /// For `epochs`: a device starts a new epoch before sealing with a key older than this.
    public var rotationPeriodMs: Int64

    public init(mode: Mode, history: HistoryVisibility, keyID: String? = nil, rotationPeriodMs: Int64 = defaultRotationPeriodMs) {
        self.mode = mode
        self.history = history
        self.keyID = keyID
        self.rotationPeriodMs = rotationPeriodMs
    }

    public var jsonObject: JSONObject {
        var object = JSONObject()
        object["algorithm"] = .string(mode.rawValue)
        object["history"] = .string(history.rawValue)
        switch mode {
        case .preShared: object["key_id"] = .string(keyID ?? "")
        case .epochs: object["rotation_period_ms"] = .integer(rotationPeriodMs)
        }
        return object
    }
}

/// The content of an `m.room.encrypted` event.
public struct EncryptedContent: Sendable, Equatable {
    public var algorithm: RoomCipher.Algorithm
    public var keyID: String
    /// For `parley.aes256gcm.v2`: the ``MessageKey/id`` of the key the content is sealed with; `nil` for v1.
    public var messageKeyID: String?
    public var nonce: [UInt8]
    /// Ciphertext followed by the 16-byte tag.
    public var ciphertext: [UInt8]
    /// The sealed message's priority, in clear so transports can honour it (§14.3); `normal` when absent.
    public var priority: MessagePriority = .normal

    public init(algorithm: RoomCipher.Algorithm, keyID: String, messageKeyID: String? = nil, nonce: [UInt8], ciphertext: [UInt8]) {
        self.algorithm = algorithm
        self.keyID = keyID
        self.messageKeyID = messageKeyID
        self.nonce = nonce
        self.ciphertext = ciphertext
    }

    public var jsonObject: JSONObject {
        var object = Self.jsonObject(algorithm: algorithm, keyID: keyID, messageKeyID: messageKeyID, nonce: nonce, ciphertext: ciphertext)
        if priority != .normal { object["priority"] = .string(priority.rawValue) }
        return object
    }

    static func jsonObject(
        algorithm: RoomCipher.Algorithm, keyID: String, messageKeyID: String?, nonce: [UInt8], ciphertext: some Collection<UInt8>
    ) -> JSONObject {
        // Listed in canonical key order, so nothing is searched or moved: this is built once per sealed message.
        var members: [JSONObject.Member] = [
            .init(key: "algorithm", value: .string(algorithm.rawValue)), .init(key: "ciphertext", value: .string(Base64.encode(ciphertext))),
            .init(key: "key_id", value: .string(keyID)),
        ]
        if let messageKeyID { members.append(.init(key: "message_key_id", value: .string(messageKeyID))) }
        members.append(.init(key: "nonce", value: .string(Base64.encode(nonce))))
        return JSONObject(sortedUniqueMembers: members)
    }
}

/// One device's copy of a room key in an `m.room.key` event.
public struct SealedRoomKey: Sendable, Equatable {
    /// The recipient device's signing key (base64).
    public var signingKey: String
    /// The HPKE encapsulated key: the sender's ephemeral X25519 public key.
    public var encapsulatedKey: [UInt8]
    /// The room key sealed with HPKE: 32 bytes and a 16-byte tag.
    public var sealed: [UInt8]

    public init(signingKey: String, encapsulatedKey: [UInt8], sealed: [UInt8]) {
        self.signingKey = signingKey
        self.encapsulatedKey = encapsulatedKey
        self.sealed = sealed
    }

    var jsonValue: JSONValue {
        .object(
            JSONObject([
                "enc": .string(Base64.encode(encapsulatedKey)), "sealed": .string(Base64.encode(sealed)), "signing_key": .string(signingKey),
            ]))
    }
}

/// The content of an `m.room.key` event: one room key, sealed to some of the room's devices.
public struct RoomKeyContent: Sendable, Equatable {
    public static let algorithm = "parley.hpke.v1"
    public var keyID: String
    public var recipients: [SealedRoomKey]

    public init(keyID: String, recipients: [SealedRoomKey]) {
        self.keyID = keyID
        self.recipients = recipients
    }

    public var jsonObject: JSONObject {
        JSONObject([
            "algorithm": .string(RoomKeyContent.algorithm), "key_id": .string(keyID), "recipients": .array(recipients.map(\.jsonValue)),
        ])
    }

    /// Canonical bytes of one recipient entry plus its separating comma: what an entry adds to an event.
    public static func entryBytes(_ recipient: SealedRoomKey) -> Int { CanonicalJSON.encode(recipient.jsonValue).count + 1 }
}

/// Seals room keys to device X25519 keys and opens them (docs/PROTOCOL.md §14.4): HPKE (RFC 9180) base mode with
/// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM, its `info` binding the room, the key id, the sending
/// device and the receiving device.
public enum KeySeal {
    public static let ciphersuite = HPKE.Ciphersuite(kem: .Curve25519_HKDF_SHA256, kdf: .HKDF_SHA256, aead: .AES_GCM_256)

    public static func info(roomID: String, keyID: String, senderKey: String, recipientKey: String) -> [UInt8] {
        Array("parley.room-key.v1\n".utf8)
            + CanonicalJSON.encode(
                .object(
                    JSONObject([
                        "key_id": .string(keyID), "recipient_key": .string(recipientKey), "room_id": .string(roomID), "sender_key": .string(senderKey),
                    ])))
    }

    /// Seals `key` for the device with signing key `recipientKey` and X25519 key `exchangeKey`.
    public static func seal(
        _ key: RoomKey, roomID: String, senderKey: String, recipientKey: String, exchangeKey: [UInt8]
    ) throws(EncryptionError) -> SealedRoomKey {
        try checkExchangeKey(exchangeKey, what: "the recipient's exchange key")
        do {
            let publicKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: exchangeKey)
            var sender = try HPKE.Sender(
                recipientKey: publicKey, ciphersuite: ciphersuite,
                info: Data(info(roomID: roomID, keyID: key.keyID, senderKey: senderKey, recipientKey: recipientKey)))
            let sealed = try sender.seal(key.bytes)
            return SealedRoomKey(signingKey: recipientKey, encapsulatedKey: Array(sender.encapsulatedKey), sealed: Array(sealed))
        } catch {
            throw EncryptionError(.weakKey, "cannot seal to this exchange key: \(error)")
        }
    }

    /// Opens a key sealed for this device and checks it is the key `keyID` names.
    public static func open(
        _ sealed: SealedRoomKey, keyID: String, roomID: String, senderKey: String, privateKey: Curve25519.KeyAgreement.PrivateKey
    ) throws(EncryptionError) -> RoomKey {
        try checkExchangeKey(sealed.encapsulatedKey, what: "the encapsulated key")
        let bytes: [UInt8]
        do {
            var recipient = try HPKE.Recipient(
                privateKey: privateKey, ciphersuite: ciphersuite,
                info: Data(info(roomID: roomID, keyID: keyID, senderKey: senderKey, recipientKey: sealed.signingKey)),
                encapsulatedKey: Data(sealed.encapsulatedKey))
            bytes = Array(try recipient.open(sealed.sealed))
        } catch {
            throw EncryptionError(.openFailed, "the sealed room key does not open with this device's key (sealed for another device, or altered)")
        }
        let key = try RoomKey(bytes: bytes)
        guard key.keyID == keyID else { throw EncryptionError(.keyMismatch, "the sealed key is not key \(keyID.prefix(16))…") }
        return key
    }

    /// A low-order or non-canonical X25519 point gives an all-zero or predictable shared secret (RFC 7748 §6.1);
    /// swift-crypto does not check, so every key that enters a key agreement is checked here first.
    static func checkExchangeKey(_ bytes: [UInt8], what: String) throws(EncryptionError) {
        do { try X25519KeyCheck.check(bytes) } catch { throw EncryptionError(.weakKey, "\(what) is refused: \(error)") }
    }
}

extension EventContent {
    static func parseEncryption(_ reader: inout ContentReader) throws(ContentError) -> EncryptionSettings {
        let mode = try reader.enumeration("algorithm", EncryptionSettings.Mode.self)
        let history = try reader.enumeration("history", HistoryVisibility.self)
        switch mode {
        case .preShared:
            return EncryptionSettings(mode: mode, history: history, keyID: try reader.keyID("key_id"))
        case .epochs:
            let period = try reader.integer("rotation_period_ms")
            guard period >= EncryptionSettings.minRotationPeriodMs else {
                throw ContentError("m.room.encryption: rotation_period_ms must be at least \(EncryptionSettings.minRotationPeriodMs)")
            }
            return EncryptionSettings(mode: mode, history: history, rotationPeriodMs: period)
        }
    }

    static func parseEncrypted(_ reader: inout ContentReader) throws(ContentError) -> EncryptedContent {
        let algorithm = try reader.enumeration("algorithm", RoomCipher.Algorithm.self)
        let keyID = try reader.keyID("key_id")
        // v2 content names its message key (the commitment a forwarded key is checked against); v1 content has none.
        let messageKeyID = algorithm == .messageKey ? try reader.keyID("message_key_id") : nil
        let nonce = try reader.base64("nonce", byteCount: RoomCipher.nonceByteCount)
        let ciphertext = try reader.base64("ciphertext", byteCount: nil)
        guard ciphertext.count >= RoomCipher.tagByteCount else {
            throw ContentError("m.room.encrypted: ciphertext is shorter than the \(RoomCipher.tagByteCount)-byte tag")
        }
        var content = EncryptedContent(algorithm: algorithm, keyID: keyID, messageKeyID: messageKeyID, nonce: nonce, ciphertext: ciphertext)
        content.priority = try MessagePriority.parse(&reader)
        return content
    }

    static func parseRoomKey(_ reader: inout ContentReader) throws(ContentError) -> RoomKeyContent {
        try reader.constant("algorithm", RoomKeyContent.algorithm)
        let keyID = try reader.keyID("key_id")
        guard let list = try reader.optionalArray("recipients"), !list.isEmpty else {
            throw ContentError("m.room.key: recipients must list at least one device")
        }
        var recipients: [SealedRoomKey] = []
        var seen: Set<String> = []
        for entry in list {
            guard case .object(let object) = entry else { throw ContentError("m.room.key: each recipient must be an object") }
            var entryReader = ContentReader(content: object, type: "m.room.key recipient")
            let signingKey = try entryReader.base64("signing_key", byteCount: 32)
            let enc = try entryReader.base64("enc", byteCount: 32)
            do { try X25519KeyCheck.check(enc) } catch { throw ContentError("m.room.key: weak encapsulated key refused: \(error)") }
            let sealed = try entryReader.base64("sealed", byteCount: RoomKey.byteCount + RoomCipher.tagByteCount)
            try entryReader.rejectUnread()
            let signingKeyText = Base64.encode(signingKey)
            guard seen.insert(signingKeyText).inserted else { throw ContentError("m.room.key: a device is listed twice") }
            recipients.append(SealedRoomKey(signingKey: signingKeyText, encapsulatedKey: enc, sealed: sealed))
        }
        return RoomKeyContent(keyID: keyID, recipients: recipients)
    }
}

extension ContentReader {
    mutating func keyID(_ name: String) throws(ContentError) -> String {
        let text = try string(name)
        guard Hex.isLowercaseHex(text, byteCount: 32) else { throw ContentError("\(type): \(name) must be 64 lowercase hex digits") }
        return text
    }

    mutating func constant(_ name: String, _ expected: String) throws(ContentError) {
        let text = try string(name)
        guard text == expected else {
            throw ContentError("\(type): \(name) \"\(Identifier.printable(text))\" is not supported; expected \(expected)")
        }
    }

    /// Strict padded base64 (RFC 4648 §4), of exactly `byteCount` bytes when given.
    mutating func base64(_ name: String, byteCount: Int?) throws(ContentError) -> [UInt8] {
        let text = try string(name)
        guard let bytes = Base64.decode(text) else { throw ContentError("\(type): \(name) is not padded base64") }
        if let byteCount, bytes.count != byteCount {
            throw ContentError("\(type): \(name) is \(bytes.count) bytes, not \(byteCount)")
        }
        return bytes
    }
}
