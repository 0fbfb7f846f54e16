import Crypto
import Foundation

/// A chained event's place: its device and its `seq` in the room. Unlike an event id, no two chained events share one
/// (docs/PROTOCOL.md §6.5), so key requests and forwards name sealed events by it.
public struct ChainPosition: Sendable, Hashable, Comparable {
    public var senderKey: String
    public var seq: Int64

    public init(senderKey: String, seq: Int64) {
        self.senderKey = senderKey
        self.seq = seq
    }

    public init(_ event: Event) {
        self.init(senderKey: event.senderKey, seq: event.seq)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.senderKey, lhs.seq) < (rhs.senderKey, rhs.seq) }

    var jsonObject: JSONObject { JSONObject(["sender_key": .string(senderKey), "seq": .integer(seq)]) }

    static func parse(_ value: JSONValue, type: String) throws(ContentError) -> ChainPosition {
        guard case .object(let object) = value else { throw ContentError("\(type): each event must be an object") }
        var reader = ContentReader(content: object, type: type)
        let senderKey = Base64.encode(try reader.base64("sender_key", byteCount: 32))
        let seq = try reader.integer("seq")
        guard seq >= 1 else { throw ContentError("\(type): seq must be at least 1") }
        try reader.rejectUnread()
        return ChainPosition(senderKey: senderKey, seq: seq)
    }
}

/// The key that opens exactly one event sealed with `parley.aes256gcm.v2` (docs/PROTOCOL.md §14.3): derived from the
/// epoch's room key and the event's associated data, so giving it away opens that event and nothing else.
public struct MessageKey: Sendable, Equatable {
    public static let byteCount = 32
    public let bytes: [UInt8]
    let aeadKey: SymmetricKey

    public init(bytes: [UInt8]) throws(EncryptionError) {
        guard bytes.count == MessageKey.byteCount else { throw EncryptionError(.malformed, "a message key is \(bytes.count) bytes, not 32") }
        self.bytes = bytes
        aeadKey = SymmetricKey(data: bytes)
    }

    /// Lowercase hex SHA-256 of `parley.message-key.id.v2` LF followed by the key, which v2 content carries as
    /// `message_key_id`: it commits the content to this key (AES-GCM alone does not), so a key forwarded by anyone
    /// opens the content only if it is the one every holder of the epoch derives, and to the same plaintext.
    public var id: String {
        var hash = SHA256()
        MessageKey.idPrefix.withUnsafeBytes { hash.update(bufferPointer: $0) }
        bytes.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return Hex.encode(hash.finalize())
    }

    static let idPrefix = Array("parley.message-key.id.v2\n".utf8)

    /// HKDF-SHA256 of the room key (empty salt) with info `parley.message-key.v2` LF followed by the associated data.
    /// For 32 bytes HKDF-Expand is one HMAC of the info and the byte 1 under the extracted key, computed so.
    public init(roomKey: RoomKey, associatedData: [UInt8]) {
        try! self.init(bytes: roomKey.messageKeyExpander.code(MessageKey.derivationPrefix, associatedData, [1]))
    }

    static let derivationPrefix = Array("parley.message-key.v2\n".utf8)

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.bytes == rhs.bytes }
}

/// The content of an `m.room.key_request`: sealed events the sending device cannot open and asks a holder of their
/// keys to forward (docs/PROTOCOL.md §14.10).
public struct KeyRequestContent: Sendable, Equatable {
    public static let maxEvents = 256
    public var events: [ChainPosition]

    public init(events: [ChainPosition]) {
        self.events = events
    }

    public var jsonObject: JSONObject { JSONObject(["events": .array(events.map { .object($0.jsonObject) })]) }

    static func parse(_ reader: inout ContentReader) throws(ContentError) -> KeyRequestContent {
        guard let list = try reader.optionalArray("events"), (1...maxEvents).contains(list.count) else {
            throw ContentError("m.room.key_request: events must list 1 to \(maxEvents) events")
        }
        var events: [ChainPosition] = []
        var seen: Set<ChainPosition> = []
        for entry in list {
            let position = try ChainPosition.parse(entry, type: "m.room.key_request")
            guard seen.insert(position).inserted else { throw ContentError("m.room.key_request: an event is listed twice") }
            events.append(position)
        }
        return KeyRequestContent(events: events)
    }
}

/// The content of an `m.room.key_forward`: message keys of some sealed events, sealed with HPKE to one device
/// (docs/PROTOCOL.md §14.10).
public struct KeyForwardContent: Sendable, Equatable {
    public static let algorithm = "parley.hpke.v1"
    /// The receiving device's signing key (base64).
    public var recipient: String
    public var encapsulatedKey: [UInt8]
    /// The HPKE ciphertext of the canonical `{"keys":[…]}` plaintext, tag included.
    public var sealed: [UInt8]

    public init(recipient: String, encapsulatedKey: [UInt8], sealed: [UInt8]) {
        self.recipient = recipient
        self.encapsulatedKey = encapsulatedKey
        self.sealed = sealed
    }

    public var jsonObject: JSONObject {
        JSONObject([
            "algorithm": .string(KeyForwardContent.algorithm), "enc": .string(Base64.encode(encapsulatedKey)), "recipient": .string(recipient),
            "sealed": .string(Base64.encode(sealed)),
        ])
    }

    static func parse(_ reader: inout ContentReader) throws(ContentError) -> KeyForwardContent {
        try reader.constant("algorithm", algorithm)
        let recipient = Base64.encode(try reader.base64("recipient", byteCount: 32))
        let enc = try reader.base64("enc", byteCount: 32)
        do { try X25519KeyCheck.check(enc) } catch { throw ContentError("m.room.key_forward: weak encapsulated key refused: \(error)") }
        let sealed = try reader.base64("sealed", byteCount: nil)
        guard sealed.count >= RoomCipher.tagByteCount else { throw ContentError("m.room.key_forward: sealed is shorter than the tag") }
        return KeyForwardContent(recipient: recipient, encapsulatedKey: enc, sealed: sealed)
    }
}

/// One forwarded key: which sealed event it opens, and the key.
public struct ForwardedKey: Sendable, Equatable {
    public var position: ChainPosition
    public var key: MessageKey

    public init(position: ChainPosition, key: MessageKey) {
        self.position = position
        self.key = key
    }
}

/// Seals message keys to one device and opens them (docs/PROTOCOL.md §14.10): HPKE with the suite of §14.4, its
/// `info` binding the room, the sending device and the receiving device.
public enum ForwardSeal {
    /// Keys per `m.room.key_forward` the reference writer puts in one event: about 180 bytes each once sealed and
    /// encoded, so a full event stays under the 64 KiB limit.
    public static let maxKeysPerEvent = 300

    public static func info(roomID: String, senderKey: String, recipientKey: String) -> [UInt8] {
        Array("parley.key-forward.v1\n".utf8)
            + CanonicalJSON.encode(
                .object(JSONObject(["recipient_key": .string(recipientKey), "room_id": .string(roomID), "sender_key": .string(senderKey)])))
    }

    /// The canonical plaintext `{"keys":[{"key":B64,"sender_key":B64,"seq":N}…]}`.
    public static func plaintext(_ keys: [ForwardedKey]) -> [UInt8] {
        CanonicalJSON.encode(
            .object(
                JSONObject([
                    "keys": .array(
                        keys.map { entry in
                            var object = entry.position.jsonObject
                            object["key"] = .string(Base64.encode(entry.key.bytes))
                            return .object(object)
                        })
                ])))
    }

    /// Seals `keys` for the device with signing key `recipientKey` and X25519 key `exchangeKey`.
    public static func seal(
        _ keys: [ForwardedKey], roomID: String, senderKey: String, recipientKey: String, exchangeKey: [UInt8]
    ) throws(EncryptionError) -> KeyForwardContent {
        try KeySeal.checkExchangeKey(exchangeKey, what: "the recipient's exchange key")
        do {
            let publicKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: exchangeKey)
            var sender = try HPKE.Sender(
                recipientKey: publicKey, ciphersuite: KeySeal.ciphersuite, info: Data(info(roomID: roomID, senderKey: senderKey, recipientKey: recipientKey)))
            let sealed = try sender.seal(plaintext(keys))
            return KeyForwardContent(recipient: recipientKey, encapsulatedKey: Array(sender.encapsulatedKey), sealed: Array(sealed))
        } catch {
            throw EncryptionError(.weakKey, "cannot seal to this exchange key: \(error)")
        }
    }

    /// Opens keys forwarded to this device.
    public static func open(
        _ forward: KeyForwardContent, roomID: String, senderKey: String, privateKey: Curve25519.KeyAgreement.PrivateKey
    ) throws(EncryptionError) -> [ForwardedKey] {
        try KeySeal.checkExchangeKey(forward.encapsulatedKey, what: "the encapsulated key")
        let bytes: [UInt8]
        do {
            var recipient = try HPKE.Recipient(
                privateKey: privateKey, ciphersuite: KeySeal.ciphersuite,
                info: Data(info(roomID: roomID, senderKey: senderKey, recipientKey: forward.recipient)), encapsulatedKey: Data(forward.encapsulatedKey))
            bytes = Array(try recipient.open(forward.sealed))
        } catch {
            throw EncryptionError(.openFailed, "the forwarded keys do not open with this device's key (sealed for another device, or altered)")
        }
        guard case .object(let object)? = try? JSONParser().parse(bytes), object.count == 1, case .array(let list)? = object["keys"] else {
            throw EncryptionError(.badPlaintext, "forwarded keys must be exactly {\"keys\":[…]}")
        }
        var keys: [ForwardedKey] = []
        for entry in list {
            do throws(ContentError) {
                guard case .object(let fields) = entry else { throw ContentError("not an object") }
                var reader = ContentReader(content: fields, type: "forwarded key")
                let key = try reader.base64("key", byteCount: MessageKey.byteCount)
                let senderKey = Base64.encode(try reader.base64("sender_key", byteCount: 32))
                let seq = try reader.integer("seq")
                try reader.rejectUnread()
                guard seq >= 1 else { throw ContentError("seq below 1") }
                keys.append(ForwardedKey(position: ChainPosition(senderKey: senderKey, seq: seq), key: try! MessageKey(bytes: key)))
            } catch {
                throw EncryptionError(.badPlaintext, "each forwarded key must be {\"key\",\"sender_key\",\"seq\"}: \(error)")
            }
        }
        return keys
    }
}
