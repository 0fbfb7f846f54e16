import Crypto
import Foundation
import ParleyCore
import ParleyTesting
import Testing

/// One case of a vector file, named for the test report.
struct EncryptionVector: CustomTestStringConvertible, Sendable {
    let name: String
    let item: JSONValue
    var testDescription: String { name }

    subscript(key: String) -> JSONValue { item[key] ?? .null }
    func text(_ key: String) -> String { self[key].text }
    func hex(_ key: String) -> [UInt8] { Vectors.hex(text(key)) }
    func base64(_ key: String) -> [UInt8] { Base64.decode(text(key)) ?? [] }
    /// A field holding canonical JSON text, parsed.
    func object(_ key: String) throws -> JSONObject { try #require(try JSONParser().parse(text(key)).objectValue) }

    /// The cases listed under `key` in docs/vectors/encryption.json.
    static func encryption(_ key: String) throws -> [EncryptionVector] {
        try Vectors.load("encryption.json")[key]!.array.map { EncryptionVector(name: $0["name"]!.text, item: $0) }
    }

    /// Project Wycheproof's X25519 cases.
    static func wycheproofX25519() throws -> [EncryptionVector] {
        try Vectors.load("x25519_wycheproof.json")["testGroups"]!.array.flatMap { group in
            group["tests"]!.array.map { EncryptionVector(name: "tcId \($0["tcId"]!.integerValue!) \($0["comment"]!.text)", item: $0) }
        }
    }

    /// Project Wycheproof's AES-GCM cases with a 256-bit key, a 96-bit nonce and a 128-bit tag: what Parley uses.
    static func wycheproofAESGCM() throws -> [EncryptionVector] {
        try Vectors.load("aes_gcm_wycheproof.json")["testGroups"]!.array
            .filter { $0["keySize"]?.integerValue == 256 && $0["ivSize"]?.integerValue == 96 && $0["tagSize"]?.integerValue == 128 }
            .flatMap { group in
                group["tests"]!.array.map { EncryptionVector(name: "tcId \($0["tcId"]!.integerValue!) \($0["comment"]!.text)", item: $0) }
            }
    }
}

private let vectorRoom = "secret"

/// The error code a throwing encryption call reports, or nil when it succeeds.
private func encryptionCode(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as EncryptionError {
        return error.code.rawValue
    } catch {
        return "not an EncryptionError: \(error)"
    }
}

private struct NotThatContent: Error {}

private func parseEncrypted(_ object: JSONObject) throws -> EncryptedContent {
    guard case .encrypted(let content) = try EventContent.parse(type: EventType.encrypted, content: object, roomID: vectorRoom) else {
        throw NotThatContent()
    }
    return content
}

private func parseRoomKey(_ object: JSONObject) throws -> RoomKeyContent {
    guard case .roomKey(let content) = try EventContent.parse(type: EventType.roomKey, content: object, roomID: vectorRoom) else {
        throw NotThatContent()
    }
    return content
}

private func canonical(_ object: JSONObject) -> String { CanonicalJSON.string(.object(object)) }

private func associatedData(_ envelope: JSONValue) -> [UInt8] {
    RoomCipher.associatedData(
        eventID: envelope["event_id"]!.text, roomID: envelope["room_id"]!.text, timestampMs: envelope["timestamp_ms"]!.integerValue!,
        senderID: envelope["sender_id"]!.text, senderKey: envelope["sender_key"]!.text, seq: envelope["seq"]!.integerValue!,
        parentEventID: envelope["parent_event_id"]?.stringValue, prevEventHash: envelope["prev_event_hash"]?.stringValue)
}

private func sealedRoomKey(_ vector: EncryptionVector) -> SealedRoomKey {
    SealedRoomKey(signingKey: vector.text("recipient_key"), encapsulatedKey: vector.base64("enc"), sealed: vector.base64("sealed"))
}

private func openKeySeal(_ vector: EncryptionVector) throws(EncryptionError) -> RoomKey {
    let privateKey = try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: vector.hex("recipient_private_key"))
    return try KeySeal.open(
        sealedRoomKey(vector), keyID: vector.text("key_id"), roomID: vector.text("room_id"), senderKey: vector.text("sender_key"),
        privateKey: privateKey)
}

private func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
}

@Suite struct EncryptionTests {
    // MARK: Room keys

    @Test(arguments: try EncryptionVector.encryption("room_keys"))
    func `a room key's id and AEAD key are the ones the generator derives`(vector: EncryptionVector) throws {
        let key = try RoomKey(bytes: vector.hex("key"))
        #expect(key.keyID == vector.text("key_id"))
        // The AEAD key is internal: content the room key seals must open under the vector's AEAD key.
        let sealed = try parseEncrypted(
            RoomCipher.seal(
                type: EventType.message, content: JSONObject(["msgtype": "text", "body": "probe"]), key: key, associatedData: [1, 2, 3],
                nonce: [UInt8](repeating: 7, count: 12), algorithm: .epochKey))
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: sealed.nonce), ciphertext: sealed.ciphertext.dropLast(16), tag: sealed.ciphertext.suffix(16))
        let plaintext = try AES.GCM.open(box, using: SymmetricKey(data: vector.hex("aead_key")), authenticating: [1, 2, 3])
        // Padded with spaces to the block; the rest is the canonical object.
        #expect(plaintext.count == RoomCipher.paddingBlock)
        #expect(
            String(decoding: plaintext.filter { $0 != 0x20 }, as: UTF8.self)
                == #"{"content":{"body":"probe","msgtype":"text"},"padding":"","type":"m.room.message"}"#)
    }

    @Test(arguments: try EncryptionVector.encryption("pre_shared_keys"))
    func `a pre-shared key derives from the secret and the room id as the generator derives it`(vector: EncryptionVector) {
        let key = RoomKey.preShared(secret: vector.hex("secret"), roomID: vector.text("room_id"))
        #expect(Hex.encode(key.bytes) == vector.text("key"))
        #expect(key.keyID == vector.text("key_id"))
    }

    @Test func `room keys of a length other than 32 bytes are refused`() {
        for count in [0, 16, 31, 33, 64] {
            #expect(encryptionCode { _ = try RoomKey(bytes: [UInt8](repeating: 1, count: count)) } == "malformed")
        }
    }

    // MARK: Sealed content

    @Test(arguments: try EncryptionVector.encryption("sealed_contents"))
    func `the associated data is the prefix and the canonical envelope fields`(vector: EncryptionVector) {
        #expect(Hex.encode(associatedData(vector["envelope"])) == vector.text("associated_data"))
    }

    @Test(arguments: try EncryptionVector.encryption("sealed_contents"))
    func `sealing with the vector's key and nonce gives exactly the vector's encrypted content`(vector: EncryptionVector) throws {
        let content = try #require(vector["content"].objectValue)
        // The generator pads independently (the fewest spaces that reach a multiple of the block); equal ciphertext
        // under the same key, nonce and associated data means an equal plaintext.
        #expect(vector.hex("plaintext").count % RoomCipher.paddingBlock == 0)
        let algorithm = try #require(RoomCipher.Algorithm(rawValue: vector.text("algorithm")))
        let sealed = RoomCipher.seal(
            type: vector.text("type"), content: content, key: try RoomKey(bytes: vector.hex("key")),
            associatedData: vector.hex("associated_data"), nonce: vector.hex("nonce"), algorithm: algorithm)
        #expect(String(decoding: CanonicalJSON.encode(.object(sealed)), as: UTF8.self) == vector.text("encrypted_content"))
    }

    @Test(arguments: try EncryptionVector.encryption("sealed_contents").filter { $0["message_key"] != .null })
    func `a v2 message key is derived from the room key and the envelope, and opens that content alone`(vector: EncryptionVector) throws {
        let key = try RoomKey(bytes: vector.hex("key"))
        let messageKey = MessageKey(roomKey: key, associatedData: vector.hex("associated_data"))
        #expect(Hex.encode(messageKey.bytes) == vector.text("message_key"))
        #expect(messageKey.id == vector.text("message_key_id"))
        let sealed = try parseEncrypted(vector.object("encrypted_content"))
        let opened = try RoomCipher.open(sealed, messageKey: messageKey, associatedData: vector.hex("associated_data"))
        #expect(opened.type == vector.text("type"))
        let elsewhere = MessageKey(roomKey: key, associatedData: vector.hex("associated_data") + [0x20])
        // Any other key is refused by the content's message_key_id before it is tried: a forwarded key opens the content
        // only if it is the key every holder of the epoch derives.
        #expect(encryptionCode { _ = try RoomCipher.open(sealed, messageKey: elsewhere, associatedData: vector.hex("associated_data")) } == "key_mismatch")
    }

    @Test func `v1 content does not open with a message key: only its epoch key opens it`() throws {
        let vector = try #require(try EncryptionVector.encryption("sealed_contents").first { $0.text("algorithm") == RoomCipher.Algorithm.epochKey.rawValue })
        let key = try RoomKey(bytes: vector.hex("key"))
        let sealed = try parseEncrypted(vector.object("encrypted_content"))
        let messageKey = MessageKey(roomKey: key, associatedData: vector.hex("associated_data"))
        #expect(encryptionCode { _ = try RoomCipher.open(sealed, messageKey: messageKey, associatedData: vector.hex("associated_data")) } == "key_mismatch")
    }

    @Test(arguments: try EncryptionVector.encryption("key_forwards"))
    func `forwarded keys open with the recipient's key to exactly the vector's message keys`(vector: EncryptionVector) throws {
        let content = try EventContent.parse(type: EventType.keyForward, content: vector.object("content"), roomID: vector.text("room_id"))
        guard case .keyForward(let forward) = content else {
            Issue.record("not a key forward: \(content)")
            return
        }
        #expect(
            ForwardSeal.info(roomID: vector.text("room_id"), senderKey: vector.text("sender_key"), recipientKey: vector.text("recipient_key"))
                == vector.hex("info"))
        let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: vector.hex("recipient_private_key"))
        let keys = try ForwardSeal.open(forward, roomID: vector.text("room_id"), senderKey: vector.text("sender_key"), privateKey: privateKey)
        let expected = vector["keys"].array.map { ($0["sender_key"]!.text, $0["seq"]!.integerValue!, $0["message_key"]!.text) }
        #expect(keys.map { "\($0.position.senderKey) \($0.position.seq) \(Hex.encode($0.key.bytes))" } == expected.map { "\($0.0) \($0.1) \($0.2)" })
        #expect(ForwardSeal.plaintext(keys) == vector.hex("plaintext"))
        // Opened as sent by another device, or in another room, it does not open.
        #expect(
            encryptionCode { _ = try ForwardSeal.open(forward, roomID: "other-room", senderKey: vector.text("sender_key"), privateKey: privateKey) }
                == "open_failed")
        #expect(
            encryptionCode {
                _ = try ForwardSeal.open(forward, roomID: vector.text("room_id"), senderKey: vector.text("recipient_key"), privateKey: privateKey)
            } == "open_failed")
    }

    @Test func `keys forwarded here open with the recipient's key only`() throws {
        let room = try RoomKey(bytes: randomBytes(32))
        let ad = Array("parley.encrypted.v1\n{}".utf8)
        let keys = [ForwardedKey(position: ChainPosition(senderKey: TestDevice("alice").publicKey, seq: 3), key: MessageKey(roomKey: room, associatedData: ad))]
        let carol = Curve25519.KeyAgreement.PrivateKey()
        let forward = try ForwardSeal.seal(
            keys, roomID: "r", senderKey: TestDevice("bob").publicKey, recipientKey: TestDevice("carol").publicKey,
            exchangeKey: Array(carol.publicKey.rawRepresentation))
        #expect(try ForwardSeal.open(forward, roomID: "r", senderKey: TestDevice("bob").publicKey, privateKey: carol) == keys)
        #expect(
            encryptionCode {
                _ = try ForwardSeal.open(forward, roomID: "r", senderKey: TestDevice("bob").publicKey, privateKey: Curve25519.KeyAgreement.PrivateKey())
            } == "open_failed")
    }

    @Test(arguments: try EncryptionVector.encryption("sealed_contents"))
    func `opening the vector's encrypted content recovers the type and content`(vector: EncryptionVector) throws {
        let sealed = try parseEncrypted(vector.object("encrypted_content"))
        let opened = try RoomCipher.open(sealed, key: RoomKey(bytes: vector.hex("key")), associatedData: vector.hex("associated_data"))
        #expect(opened.type == vector.text("type"))
        #expect(canonical(opened.content) == CanonicalJSON.string(vector["content"]))
    }

    @Test(arguments: try EncryptionVector.encryption("invalid_contents"))
    func `altered content, a wrong key or a forbidden plaintext fails with the expected code`(vector: EncryptionVector) throws {
        let sealed = try parseEncrypted(vector.object("encrypted_content"))
        let key = try RoomKey(bytes: vector.hex("key"))
        let code = encryptionCode { _ = try RoomCipher.open(sealed, key: key, associatedData: vector.hex("associated_data")) }
        #expect(code == vector["error"].stringValue)
    }

    @Test func `each vector error code is one the implementation can report`() throws {
        let codes =
            try EncryptionVector.encryption("invalid_contents").compactMap { $0["error"].stringValue }
            + EncryptionVector.encryption("invalid_key_seals").compactMap { $0["error"].stringValue }
        for code in Set(codes) { #expect(EncryptionError.Code(rawValue: code) != nil, "\(code)") }
        #expect(Set(codes) == ["decrypt_failed", "key_mismatch", "bad_plaintext", "weak_key", "open_failed"])
    }

    @Test func `content sealed here opens, and opens nowhere else`() throws {
        let key = try RoomKey(bytes: randomBytes(32))
        let other = try RoomKey(bytes: randomBytes(32))
        let ad = Array("parley.encrypted.v1\n{}".utf8)
        var generator = SystemRandomNumberGenerator()
        let content = JSONObject(["msgtype": "text", "body": "round trip"])
        let sealed = try parseEncrypted(RoomCipher.seal(type: EventType.message, content: content, key: key, associatedData: ad, using: &generator))
        let opened = try RoomCipher.open(sealed, key: key, associatedData: ad)
        #expect(opened.type == EventType.message && opened.content == content)
        #expect(encryptionCode { _ = try RoomCipher.open(sealed, key: other, associatedData: ad) } == "key_mismatch")
        // Another envelope derives another message key, which the content's message_key_id does not name.
        #expect(encryptionCode { _ = try RoomCipher.open(sealed, key: key, associatedData: ad + [0]) } == "key_mismatch")
        // Built by hand rather than parsed: the same bytes split at another place are refused, not re-split.
        let shifted = EncryptedContent(
            algorithm: sealed.algorithm, keyID: sealed.keyID, messageKeyID: sealed.messageKeyID, nonce: sealed.nonce + [sealed.ciphertext[0]],
            ciphertext: Array(sealed.ciphertext.dropFirst()))
        #expect(encryptionCode { _ = try RoomCipher.open(shifted, key: key, associatedData: ad) } == "malformed")
        let tagless = EncryptedContent(
            algorithm: sealed.algorithm, keyID: sealed.keyID, messageKeyID: sealed.messageKeyID, nonce: sealed.nonce,
            ciphertext: Array(sealed.ciphertext.prefix(15)))
        #expect(encryptionCode { _ = try RoomCipher.open(tagless, key: key, associatedData: ad) } == "malformed")
    }

    @Test func `sealed content shows its size only to the padding block, and opens to what was sealed`() throws {
        let key = try RoomKey(bytes: randomBytes(32))
        let ad = Array("parley.encrypted.v1\n{}".utf8)
        var generator = SystemRandomNumberGenerator()
        func sealedSize(_ type: String, _ content: JSONObject) throws -> Int {
            let sealed = try parseEncrypted(RoomCipher.seal(type: type, content: content, key: key, associatedData: ad, using: &generator))
            let opened = try RoomCipher.open(sealed, key: key, associatedData: ad)
            #expect(opened.type == type && opened.content == content)
            return sealed.ciphertext.count - 16
        }
        let short = try [1, 40, 150].map {
            try sealedSize(EventType.message, JSONObject(["msgtype": "text", "body": .string(String(repeating: "a", count: $0))]))
        }
        #expect(short == [256, 256, 256])
        #expect(try sealedSize(EventType.message, JSONObject(["msgtype": "text", "body": .string(String(repeating: "é", count: 300))])) == 768)
        #expect(try sealedSize(EventType.reaction, JSONObject(["target_event_id": "$1-abc", "key": "👍"])) == 256)
    }

    @Test func `padding opens when it is all spaces, and is refused with any other byte at any position`() throws {
        let key = try RoomKey(bytes: randomBytes(32))
        let ad = Array("parley.encrypted.v1\n{}".utf8)
        // The AEAD key as §14.3 derives it, to seal plaintexts no sender would write.
        let aeadKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: key.bytes), salt: [UInt8](), info: Array("parley.room-key.aead.v1".utf8), outputByteCount: 32)
        func open(padding: [UInt8]) -> String? {
            let plaintext = Array(#"{"content":{"body":"x","msgtype":"text"},"padding":""#.utf8) + padding + Array(#"","type":"m.room.message"}"#.utf8)
            let nonce = randomBytes(12)
            let box = try! AES.GCM.seal(plaintext, using: aeadKey, nonce: AES.GCM.Nonce(data: nonce), authenticating: ad)
            let sealed = EncryptedContent(algorithm: .epochKey, keyID: key.keyID, nonce: nonce, ciphertext: Array(box.ciphertext + box.tag))
            return encryptionCode { _ = try RoomCipher.open(sealed, key: key, associatedData: ad) }
        }
        for length in [1, 7, 8, 9, 16, 31, 255] {
            let spaces = [UInt8](repeating: 0x20, count: length)
            #expect(open(padding: spaces) == nil, "\(length) spaces")
            for position in 0..<length {
                var padding = spaces
                padding[position] = UInt8(ascii: "x")
                #expect(open(padding: padding) == "bad_plaintext", "x at \(position) of \(length)")
            }
        }
    }

    @Test func `state, key, encrypted and redaction types may never be sealed; what a timeline shows may`() {
        for type in EventType.replayedTypes.union([EventType.encrypted, EventType.redaction]) { #expect(!RoomCipher.maySeal(type), "\(type)") }
        for type in [EventType.message, EventType.edit, EventType.reaction, EventType.receipt, "org.example.custom"] {
            #expect(RoomCipher.maySeal(type), "\(type)")
        }
    }

    // MARK: Key seals

    @Test(arguments: try EncryptionVector.encryption("key_seals"))
    func `the key seal info binds room, key id, sender and recipient as the generator does`(vector: EncryptionVector) {
        let info = KeySeal.info(
            roomID: vector.text("room_id"), keyID: vector.text("key_id"), senderKey: vector.text("sender_key"),
            recipientKey: vector.text("recipient_key"))
        #expect(Hex.encode(info) == vector.text("info"))
    }

    @Test(arguments: try EncryptionVector.encryption("key_seals"))
    func `a key sealed by the generator opens to the room key`(vector: EncryptionVector) throws {
        let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: vector.hex("recipient_private_key"))
        #expect(Array(privateKey.publicKey.rawRepresentation) == vector.base64("recipient_exchange_key"))
        let key = try openKeySeal(vector)
        #expect(key.bytes == vector.hex("key"))
        #expect(key.keyID == vector.text("key_id"))
    }

    @Test(arguments: try EncryptionVector.encryption("key_seals"))
    func `a key sealed here to the vector's device opens with its private key`(vector: EncryptionVector) throws {
        // swift-crypto picks the ephemeral key itself, so sealing is checked by a round trip, not against the bytes.
        let key = try RoomKey(bytes: vector.hex("key"))
        let sealed = try KeySeal.seal(
            key, roomID: vector.text("room_id"), senderKey: vector.text("sender_key"), recipientKey: vector.text("recipient_key"),
            exchangeKey: vector.base64("recipient_exchange_key"))
        #expect(sealed.signingKey == vector.text("recipient_key"))
        #expect(sealed.encapsulatedKey.count == 32 && sealed.sealed.count == 48)
        let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: vector.hex("recipient_private_key"))
        let opened = try KeySeal.open(
            sealed, keyID: key.keyID, roomID: vector.text("room_id"), senderKey: vector.text("sender_key"), privateKey: privateKey)
        #expect(opened.bytes == key.bytes)
    }

    @Test func `the vector m.room.key content parses, lists every seal and re-encodes to the same bytes`() throws {
        let vectors = try Vectors.load("encryption.json")
        let text = vectors["room_key_content"]!.text
        let content = try parseRoomKey(try #require(try JSONParser().parse(text).objectValue))
        let seals = try EncryptionVector.encryption("key_seals")
        #expect(content.keyID == seals[0].text("key_id"))
        #expect(content.recipients == seals.map(sealedRoomKey))
        #expect(canonical(content.jsonObject) == text)
    }

    @Test(arguments: try EncryptionVector.encryption("invalid_key_seals"))
    func `weak, misdirected or altered key seals fail with the expected code`(vector: EncryptionVector) {
        #expect(encryptionCode { _ = try openKeySeal(vector) } == vector["error"].stringValue)
    }

    @Test func `sealing to a weak exchange key is refused`() throws {
        let key = try RoomKey(bytes: randomBytes(32))
        for point in X25519KeyCheck.lowOrderPoints + [[UInt8](repeating: 0xFF, count: 32), [UInt8](repeating: 9, count: 31)] {
            let code = encryptionCode {
                _ = try KeySeal.seal(
                    key, roomID: vectorRoom, senderKey: Base64.encode(randomBytes(32)), recipientKey: Base64.encode(randomBytes(32)), exchangeKey: point)
            }
            #expect(code == "weak_key", "\(Hex.encode(point))")
        }
    }

    @Test(arguments: try EncryptionVector.encryption("encryption_settings"))
    func `m.room.encryption settings parse and re-encode to the same bytes`(vector: EncryptionVector) throws {
        guard case .encryption(let settings) = try EventContent.parse(type: EventType.encryption, content: vector.object("content"), roomID: vectorRoom)
        else { throw NotThatContent() }
        #expect(canonical(settings.jsonObject) == vector.text("content"))
    }

    // MARK: HPKE (RFC 9180)

    @Test func `swift-crypto opens the RFC 9180 vectors of Parley's suite, in sequence`() throws {
        let entries = try Vectors.load("hpke_rfc9180.json").array
        #expect(!entries.isEmpty)
        for entry in entries {
            #expect(entry["mode"]?.integerValue == 0 && entry["kem_id"]?.integerValue == 32)
            #expect(entry["kdf_id"]?.integerValue == 1 && entry["aead_id"]?.integerValue == 2)
            let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Vectors.hex(entry["skRm"]!.text))
            #expect(Array(privateKey.publicKey.rawRepresentation) == Vectors.hex(entry["pkRm"]!.text))
            var recipient = try HPKE.Recipient(
                privateKey: privateKey, ciphersuite: KeySeal.ciphersuite, info: Data(Vectors.hex(entry["info"]!.text)),
                encapsulatedKey: Data(Vectors.hex(entry["enc"]!.text)))
            let encryptions = entry["encryptions"]!.array
            #expect(encryptions.count == 8)
            for (sequence, encryption) in encryptions.enumerated() {
                let plaintext = try recipient.open(
                    Data(Vectors.hex(encryption["ct"]!.text)), authenticating: Data(Vectors.hex(encryption["aad"]!.text)))
                #expect(Array(plaintext) == Vectors.hex(encryption["pt"]!.text), "encryption \(sequence)")
            }
        }
    }

    @Test func `an RFC 9180 ciphertext opened out of sequence fails`() throws {
        let entry = try #require(Vectors.load("hpke_rfc9180.json").array.first)
        var recipient = try HPKE.Recipient(
            privateKey: Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Vectors.hex(entry["skRm"]!.text)), ciphersuite: KeySeal.ciphersuite,
            info: Data(Vectors.hex(entry["info"]!.text)), encapsulatedKey: Data(Vectors.hex(entry["enc"]!.text)))
        let second = entry["encryptions"]!.array[1]
        #expect(throws: (any Error).self) {
            try recipient.open(Data(Vectors.hex(second["ct"]!.text)), authenticating: Data(Vectors.hex(second["aad"]!.text)))
        }
    }

    // MARK: Wycheproof X25519 and AES-GCM

    @Test(arguments: try EncryptionVector.wycheproofX25519())
    func `X25519 keys the check lets through agree with Wycheproof, and all-zero secrets never get through`(vector: EncryptionVector) throws {
        let publicKey = vector.hex("public")
        let passes = (try? X25519KeyCheck.check(publicKey)) != nil
        let shared = vector.hex("shared")
        if shared.allSatisfy({ $0 == 0 }) { #expect(!passes, "an all-zero shared secret must be refused by the key check") }
        if vector.text("result") == "valid" { #expect(passes, "a valid Wycheproof key must pass the check") }
        guard passes, ["valid", "acceptable"].contains(vector.text("result")) else { return }
        let privateKey = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: vector.hex("private"))
        let secret = try privateKey.sharedSecretFromKeyAgreement(with: Curve25519.KeyAgreement.PublicKey(rawRepresentation: publicKey))
        #expect(secret.withUnsafeBytes { Array($0) } == shared)
    }

    @Test func `the Wycheproof X25519 file has the all-zero cases the check is there for`() throws {
        let zero = try EncryptionVector.wycheproofX25519().filter { $0.hex("shared").allSatisfy { $0 == 0 } }
        #expect(zero.count >= 10)
    }

    @Test(arguments: try EncryptionVector.wycheproofAESGCM())
    func `AES-256-GCM opens Wycheproof's valid cases to their message and refuses the invalid ones`(vector: EncryptionVector) throws {
        let opened: [UInt8]? = try? {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: vector.hex("iv")), ciphertext: vector.hex("ct"), tag: vector.hex("tag"))
            return Array(try AES.GCM.open(box, using: SymmetricKey(data: vector.hex("key")), authenticating: vector.hex("aad")))
        }()
        switch vector.text("result") {
        case "valid": #expect(opened == vector.hex("msg"))
        case "invalid": #expect(opened == nil)
        default: break
        }
    }

    // MARK: Content parsing, without vectors

    @Suite struct ContentParsing {
        static func validEncrypted() throws -> JSONObject {
            RoomCipher.seal(
                type: EventType.message, content: JSONObject(["msgtype": "text", "body": "x"]), key: try RoomKey(bytes: randomBytes(32)),
                associatedData: [], nonce: randomBytes(12))
        }

        static func changed(_ object: JSONObject, _ key: String, _ value: JSONValue?) -> JSONObject {
            var copy = object
            copy[key] = value
            return copy
        }

        @Test func `valid encrypted content parses`() throws {
            #expect(throws: Never.self) { try parseEncrypted(Self.validEncrypted()) }
        }

        @Test func `encrypted content with a wrong nonce length, short ciphertext, unknown algorithm or bad key id is refused`() throws {
            let valid = try Self.validEncrypted()
            let broken: [(String, JSONObject)] = [
                ("11-byte nonce", Self.changed(valid, "nonce", .string(Base64.encode(randomBytes(11))))),
                ("13-byte nonce", Self.changed(valid, "nonce", .string(Base64.encode(randomBytes(13))))),
                ("empty nonce", Self.changed(valid, "nonce", "")),
                ("nonce not base64", Self.changed(valid, "nonce", "not base64!!")),
                ("15-byte ciphertext", Self.changed(valid, "ciphertext", .string(Base64.encode(randomBytes(15))))),
                ("empty ciphertext", Self.changed(valid, "ciphertext", "")),
                ("unknown algorithm", Self.changed(valid, "algorithm", "parley.aes128gcm.v1")),
                ("algorithm missing", Self.changed(valid, "algorithm", nil)),
                ("key_id not hex", Self.changed(valid, "key_id", .string(String(repeating: "zz", count: 32)))),
                ("key_id uppercase hex", Self.changed(valid, "key_id", .string(valid["key_id"]!.text.uppercased()))),
                ("key_id of 31 bytes", Self.changed(valid, "key_id", .string(String(valid["key_id"]!.text.dropLast(2))))),
                ("key_id a number", Self.changed(valid, "key_id", 1)),
                ("an unknown field", Self.changed(valid, "extra", 1)),
                ("v2 without message_key_id", Self.changed(valid, "message_key_id", nil)),
                ("message_key_id not hex", Self.changed(valid, "message_key_id", .string(String(repeating: "zz", count: 32)))),
                ("v1 with a message_key_id", Self.changed(valid, "algorithm", .string(RoomCipher.Algorithm.epochKey.rawValue))),
            ]
            #expect(valid["algorithm"]?.stringValue == RoomCipher.Algorithm.messageKey.rawValue)
            for (name, object) in broken {
                #expect(throws: ContentError.self, "\(name)") {
                    try EventContent.parse(type: EventType.encrypted, content: object, roomID: vectorRoom)
                }
            }
        }

        static func entry(enc: [UInt8] = Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation), signingKey: [UInt8]) -> JSONValue {
            .object(
                JSONObject([
                    "enc": .string(Base64.encode(enc)), "sealed": .string(Base64.encode(randomBytes(48))), "signing_key": .string(Base64.encode(signingKey)),
                ]))
        }

        static func roomKey(_ recipients: [JSONValue]?) -> JSONObject {
            var object = JSONObject(["algorithm": .string(RoomKeyContent.algorithm), "key_id": .string(Hex.encode(randomBytes(32)))])
            object["recipients"] = recipients.map(JSONValue.array)
            return object
        }

        @Test func `an m.room.key content with distinct recipients parses`() throws {
            let content = try parseRoomKey(Self.roomKey([Self.entry(signingKey: randomBytes(32)), Self.entry(signingKey: randomBytes(32))]))
            #expect(content.recipients.count == 2)
        }

        @Test func `an m.room.key content listing a device twice is refused`() {
            let device = randomBytes(32)
            #expect(throws: ContentError.self) {
                try parseRoomKey(Self.roomKey([Self.entry(signingKey: device), Self.entry(signingKey: device)]))
            }
        }

        @Test(arguments: X25519KeyCheck.lowOrderPoints + [[UInt8](repeating: 0xFF, count: 32)])
        func `an m.room.key content with a low-order or non-canonical enc is refused`(enc: [UInt8]) {
            #expect(throws: ContentError.self) { try parseRoomKey(Self.roomKey([Self.entry(enc: enc, signingKey: randomBytes(32))])) }
        }

        @Test func `an m.room.key content without recipients is refused`() {
            #expect(throws: ContentError.self) { try parseRoomKey(Self.roomKey([])) }
            #expect(throws: ContentError.self) { try parseRoomKey(Self.roomKey(nil)) }
        }

        @Test(arguments: [
            ("31 bytes", JSONValue.string(Base64.encode(randomBytes(31)))), ("33 bytes", .string(Base64.encode(randomBytes(33)))),
            ("not base64", .string("not*base64")), ("unpadded", .string(String(Base64.encode(randomBytes(32)).dropLast()))), ("a number", .integer(7)),
        ])
        func `an m.room.key content with a malformed encapsulation is refused, naming enc`(label: String, enc: JSONValue) {
            var entry = Self.entry(signingKey: randomBytes(32)).objectValue!
            entry["enc"] = enc
            do {
                _ = try parseRoomKey(Self.roomKey([.object(entry)]))
                Issue.record("\(label) accepted")
            } catch {
                #expect("\(error)".contains("enc"), "\(label): \(error)")
            }
        }

        @Test func `an m.room.key content with a sealed key of the wrong length is refused`() {
            var entry = Self.entry(signingKey: randomBytes(32)).objectValue!
            entry["sealed"] = .string(Base64.encode(randomBytes(47)))
            #expect(throws: ContentError.self) { try parseRoomKey(Self.roomKey([.object(entry)])) }
        }

        static func join(exchangeKey: [UInt8]) -> JSONObject {
            let signingKey = Base64.encode(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)
            return JSONObject([
                "membership": "join", "user_id": "bob",
                "devices": [.object(JSONObject(["signing_key": .string(signingKey), "exchange_key": .string(Base64.encode(exchangeKey))]))],
            ])
        }

        @Test func `a member event with a sound exchange key is accepted`() {
            let good = Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
            #expect(throws: Never.self) { try EventContent.parse(type: EventType.member, content: Self.join(exchangeKey: good), roomID: vectorRoom) }
        }

        @Test(arguments: X25519KeyCheck.lowOrderPoints)
        func `a member event with an all-zero or low-order exchange key is refused`(point: [UInt8]) {
            #expect(throws: ContentError.self) {
                try EventContent.parse(type: EventType.member, content: Self.join(exchangeKey: point), roomID: vectorRoom)
            }
        }
    }
}
