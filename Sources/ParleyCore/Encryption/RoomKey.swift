import Crypto
import Foundation

/// Why encrypted content or a sealed key could not be opened or accepted (docs/PROTOCOL.md §14). The description
/// names the fault and never contains key material or plaintext.
public struct EncryptionError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// A field has the wrong length or encoding.
        case malformed
        /// The AEAD tag does not verify: a flipped bit in nonce, ciphertext, tag or associated data, or the wrong key.
        case decryptFailed = "decrypt_failed"
        /// The key presented is not the one the content names.
        case keyMismatch = "key_mismatch"
        /// The plaintext is not a `{"content":…,"type":…}` object of a type that may be sealed.
        case badPlaintext = "bad_plaintext"
        /// An X25519 public key or encapsulation is low-order or not canonical: its shared secret would be all-zero
        /// or predictable.
        case weakKey = "weak_key"
        /// A sealed room key does not open with this device's key (sealed for another device, or altered).
        case openFailed = "open_failed"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// A room's symmetric key for one epoch (docs/PROTOCOL.md §14.2): 32 random bytes, or for a pre-shared-key room the
/// key derived from the invite's secret.
///
/// Its ``keyID`` is an HMAC of the key: events name the key by it, and since nobody can find a second key with the
/// same id, content that opens under the named key opens under no other (the key commitment AES-GCM lacks).
public struct RoomKey: Sendable {
    public static let byteCount = 32
    public let bytes: [UInt8]
    /// Lowercase hex HMAC-SHA256(key, "parley.room-key.id.v1").
    public let keyID: String
    /// The AEAD key of `parley.aes256gcm.v1` content: one for the whole epoch.
    let aeadKey: SymmetricKey
    /// HMAC keyed with HKDF-Extract of the key (empty salt), from which each `parley.aes256gcm.v2` message key is
    /// expanded: keyed once per epoch key, copied per message.
    let messageKeyExpander: KeyedSHA256HMAC

    public init(bytes: [UInt8]) throws(EncryptionError) {
        guard bytes.count == RoomKey.byteCount else { throw EncryptionError(.malformed, "a room key is \(bytes.count) bytes, not 32") }
        self.bytes = bytes
        let key = SymmetricKey(data: bytes)
        keyID = Hex.encode(HMAC<SHA256>.authenticationCode(for: Array("parley.room-key.id.v1".utf8), using: key))
        aeadKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key, salt: [UInt8](), info: Array("parley.room-key.aead.v1".utf8), outputByteCount: 32)
        let prk = HKDF<SHA256>.extract(inputKeyMaterial: key, salt: [UInt8]())
        messageKeyExpander = KeyedSHA256HMAC(key: Array(prk))
    }

    /// A fresh random key.
    public static func random(using generator: inout some RandomNumberGenerator) -> RoomKey {
        return try! RoomKey(bytes: randomBytes(byteCount, using: &generator))
    }

    /// The key of a pre-shared-key room: HKDF-SHA256 of the invite's 32-byte secret, salted with the room id, so one
    /// secret gives unrelated keys in different rooms.
    public static func preShared(secret: [UInt8], roomID: String) -> RoomKey {
        let derived = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), salt: Array(roomID.utf8), info: Array("parley.psk.v1".utf8),
            outputByteCount: byteCount)
        return try! RoomKey(bytes: derived.withUnsafeBytes { Array($0) })
    }
}

/// HMAC-SHA256 (RFC 2104) under one key, with the key's inner and outer blocks hashed once: each message then costs
/// its own blocks and one outer block. Through SHA-256's buffer-pointer API, because swift-crypto's `HMAC` takes data
/// through the generic `DataProtocol`, whose per-call overhead was a sixth of sealing and opening a message.
struct KeyedSHA256HMAC: Sendable {
    private let inner: SHA256
    private let outer: SHA256

    /// `key` of at most 64 bytes (the block size), as every key here is.
    init(key: [UInt8]) {
        precondition(key.count <= 64, "longer HMAC keys are hashed first; none is used here")
        var padded = key + [UInt8](repeating: 0, count: 64 - key.count)
        var inner = SHA256()
        var outer = SHA256()
        for index in padded.indices { padded[index] ^= 0x36 }
        padded.withUnsafeBytes { inner.update(bufferPointer: $0) }
        for index in padded.indices { padded[index] ^= 0x36 ^ 0x5C }
        padded.withUnsafeBytes { outer.update(bufferPointer: $0) }
        self.inner = inner
        self.outer = outer
    }

    /// The authentication code of the concatenation of `parts`.
    func code(_ parts: [UInt8]...) -> [UInt8] {
        var inner = self.inner
        for part in parts { part.withUnsafeBytes { inner.update(bufferPointer: $0) } }
        var outer = self.outer
        inner.finalize().withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize().withUnsafeBytes { Array($0) }
    }
}

/// `count` random bytes, eight per call to the generator (the system generator makes a system call per call).
func randomBytes(_ count: Int, using generator: inout some RandomNumberGenerator) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count + 7)
    while bytes.count < count { withUnsafeBytes(of: generator.next()) { bytes += $0 } }
    return Array(bytes.prefix(count))
}

/// Seals and opens event content under a room key (docs/PROTOCOL.md §14.3): AES-256-GCM with a random 96-bit nonce,
/// the event's envelope as associated data, so sealed content cannot be moved into another event.
public enum RoomCipher {
    /// How sealed content is keyed, named by its `algorithm` (docs/PROTOCOL.md §14.3).
    public enum Algorithm: String, Sendable, Equatable, CaseIterable {
        /// One AEAD key for the whole epoch: only the epoch key opens the content.
        case epochKey = "parley.aes256gcm.v1"
        /// A key per message, derived from the epoch key and the envelope: a holder can give away the key of one
        /// message (§14.10) without opening any other. What this implementation writes.
        case messageKey = "parley.aes256gcm.v2"
    }
    public static let nonceByteCount = 12
    public static let tagByteCount = 16
    /// Sealed events (of every device) a device may have seen under one key before it must start a new epoch.
    /// Random 96-bit nonces stay far below a collision at this count (probability under 2^-33 across the room).
    public static let maxSealsPerKey: Int64 = 1 << 30

    /// Types whose content may be sealed: what a timeline shows, never what decides who may do what. State,
    /// keys and redactions stay readable so every store can resolve state and strip redacted content; key requests
    /// and forwards are about keys, and a forward is sealed to its recipient already.
    public static func maySeal(_ type: String) -> Bool {
        !EventType.isReplayed(type) && type != EventType.encrypted && type != EventType.redaction && type != EventType.keyRequest
            && type != EventType.keyForward
    }

    /// The associated data of an event's sealed content: a prefix, then the canonical JSON of the envelope fields
    /// fixed before the content is sealed.
    public static func associatedData(
        eventID: String, roomID: String, timestampMs: Int64, senderID: String, senderKey: String, seq: Int64,
        parentEventID: String?, prevEventHash: String?
    ) -> [UInt8] {
        var object = JSONObject()
        object["event_id"] = .string(eventID)
        object["room_id"] = .string(roomID)
        object["timestamp_ms"] = .integer(timestampMs)
        object["sender_id"] = .string(senderID)
        object["sender_key"] = .string(senderKey)
        object["seq"] = .integer(seq)
        if let parentEventID { object["parent_event_id"] = .string(parentEventID) }
        object["prev_event_hash"] = prevEventHash.map(JSONValue.string) ?? .null
        return Array("parley.encrypted.v1\n".utf8) + CanonicalJSON.encode(.object(object))
    }

    public static func associatedData(of event: Event) -> [UInt8] {
        associatedData(
            eventID: event.eventID, roomID: event.roomID, timestampMs: event.timestampMs, senderID: event.senderID,
            senderKey: event.senderKey, seq: event.seq, parentEventID: event.parentEventID, prevEventHash: event.prevEventHash)
    }

    /// The content of an `m.room.encrypted` event carrying `type` and `content`. A message's `priority` goes on the
    /// envelope, in clear, for transports to honour (§14.3); the sealed content never carries it.
    public static func seal(
        type: String, content: JSONObject, key: RoomKey, associatedData: [UInt8], using generator: inout some RandomNumberGenerator
    ) -> JSONObject {
        let nonce = randomBytes(nonceByteCount, using: &generator)
        return seal(type: type, content: content, key: key, associatedData: associatedData, nonce: nonce)
    }

    /// Seals with a given nonce: for test vectors only. A nonce must never be used twice under one key.
    public static func seal(
        type: String, content: JSONObject, key: RoomKey, associatedData: [UInt8], nonce: [UInt8], algorithm: Algorithm = .messageKey
    ) -> JSONObject {
        precondition(maySeal(type), "\(type) is never sealed")
        var inner = content
        let priority = type == EventType.message ? inner["priority"] : nil
        inner["priority"] = nil
        let plaintext = paddedPlaintext(type: type, content: inner)
        let messageKey = algorithm == .messageKey ? MessageKey(roomKey: key, associatedData: associatedData) : nil
        let box = try! AES.GCM.seal(plaintext, using: messageKey?.aeadKey ?? key.aeadKey, nonce: AES.GCM.Nonce(data: nonce), authenticating: associatedData)
        // `combined` (present for 12-byte nonces) is nonce, ciphertext and tag in one buffer, encoded from where it is.
        var envelope = EncryptedContent.jsonObject(
            algorithm: algorithm, keyID: key.keyID, messageKeyID: messageKey?.id, nonce: nonce, ciphertext: box.combined!.dropFirst(nonceByteCount))
        envelope["priority"] = priority
        return envelope
    }

    /// Plaintexts are padded to a multiple of this many bytes, so a sealed event tells its size only to this grain.
    public static let paddingBlock = 256
    private static let paddingSpaces = [UInt8](repeating: 0x20, count: paddingBlock)

    /// The canonical JSON of `{"content","padding","type"}`, with as many spaces of padding as make its length a
    /// multiple of ``paddingBlock``.
    static func paddedPlaintext(type: String, content: JSONObject) -> [UInt8] {
        // Written in canonical key order (content, padding, type), so the spaces go in without moving anything.
        var plaintext: [UInt8] = []
        plaintext.reserveCapacity(paddingBlock * 5)
        plaintext.append(contentsOf: #"{"content":"#.utf8)
        CanonicalJSON.appendObject(content, to: &plaintext)
        plaintext.append(contentsOf: #","padding":""#.utf8)
        // The tail is written after the padding's place, then moved up by the padding's length.
        let paddingStart = plaintext.count
        plaintext.append(contentsOf: #"","type":"#.utf8)
        CanonicalJSON.appendString(type, to: &plaintext)
        plaintext.append(UInt8(ascii: "}"))
        let spaces = (paddingBlock - plaintext.count % paddingBlock) % paddingBlock
        plaintext.insert(contentsOf: paddingSpaces[..<spaces], at: paddingStart)
        return plaintext
    }

    /// Opens sealed content with `key`, which must be the key it names.
    /// - Returns: the inner type and content; the content is not checked against its type's schema here.
    public static func open(
        _ sealed: EncryptedContent, key: RoomKey, associatedData: [UInt8]
    ) throws(EncryptionError) -> (type: String, content: JSONObject) {
        guard sealed.keyID == key.keyID else { throw EncryptionError(.keyMismatch, "the content names key \(sealed.keyID.prefix(16))…, not this key") }
        guard sealed.algorithm == .messageKey else { return try open(sealed, aeadKey: key.aeadKey, associatedData: associatedData) }
        return try open(sealed, messageKey: MessageKey(roomKey: key, associatedData: associatedData), associatedData: associatedData)
    }

    /// Opens `parley.aes256gcm.v2` content with the key of this one message (forwarded, §14.10).
    public static func open(
        _ sealed: EncryptedContent, messageKey: MessageKey, associatedData: [UInt8]
    ) throws(EncryptionError) -> (type: String, content: JSONObject) {
        guard sealed.algorithm == .messageKey else {
            throw EncryptionError(.keyMismatch, "content sealed with \(sealed.algorithm.rawValue) opens only with its epoch's key")
        }
        guard sealed.messageKeyID == messageKey.id else {
            throw EncryptionError(.keyMismatch, "the content names message key \((sealed.messageKeyID ?? "").prefix(16))…, not this one")
        }
        return try open(sealed, aeadKey: messageKey.aeadKey, associatedData: associatedData)
    }

    static func open(
        _ sealed: EncryptedContent, aeadKey: SymmetricKey, associatedData: [UInt8]
    ) throws(EncryptionError) -> (type: String, content: JSONObject) {
        // The box below splits one buffer at 12 bytes: content built by hand (not parsed) must have that shape too.
        guard sealed.nonce.count == nonceByteCount, sealed.ciphertext.count >= tagByteCount else {
            throw EncryptionError(.malformed, "the nonce must be \(nonceByteCount) bytes and the ciphertext at least the \(tagByteCount)-byte tag")
        }
        let plaintext: Data
        do {
            // From one nonce-ciphertext-tag buffer: building the box from three parts costs half as much as opening it.
            let box = try AES.GCM.SealedBox(combined: sealed.nonce + sealed.ciphertext)
            plaintext = try AES.GCM.open(box, using: aeadKey, authenticating: associatedData)
        } catch {
            throw EncryptionError(.decryptFailed, "sealed content does not open: nonce, ciphertext, tag or envelope altered")
        }
        let value: JSONValue
        do { value = try JSONParser().parse(plaintext) } catch {
            throw EncryptionError(.badPlaintext, "the plaintext is not valid JSON: \(error)")
        }
        guard case .object(let object) = value, case .string(let type)? = object["type"], case .object(let content)? = object["content"],
            object.count == 2 || (object.count == 3 && isPadding(object["padding"]))
        else {
            throw EncryptionError(
                .badPlaintext, "the plaintext must be exactly {\"content\":{…},\"padding\":\"  …\",\"type\":\"…\"} (padding optional, spaces only)")
        }
        guard EventTypeName.problem(with: type) == nil, maySeal(type) else {
            throw EncryptionError(.badPlaintext, "\(Identifier.printable(type)) may not be sent sealed")
        }
        // Its envelope carries it, where transports see it (§14.3): a second one inside could say otherwise.
        guard type != EventType.message || content["priority"] == nil else {
            throw EncryptionError(.badPlaintext, "a sealed m.room.message carries its priority on the envelope, not inside")
        }
        return (type, content)
    }

    private static func isPadding(_ value: JSONValue?) -> Bool {
        guard case .string(var padding)? = value else { return false }
        // Through the contiguous bytes, eight at a time: up to 255 spaces per message.
        return padding.withUTF8 { bytes in
            let spaces: UInt64 = 0x2020_2020_2020_2020
            var index = 0
            if let base = bytes.baseAddress {
                while index + 8 <= bytes.count {
                    guard UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self) == spaces else { return false }
                    index += 8
                }
            }
            return bytes[index...].allSatisfy { $0 == 0x20 }
        }
    }
}
