import Crypto
import Foundation
import ParleyArgon2
import ParleyCore
import ParleyStore

/// What a restore brought back.
public struct RestoreReport: Sendable, Equatable {
    public var userID: String
    /// Whether the identity was installed (false: the home already held this identity, and only keys were added).
    public var installedIdentity: Bool
    public var roomKeys: Int
    public var bucketRooms: Int
}

/// Key backups (`parley backup export|import`, docs/PROTOCOL.md §14.7): this device's identity, every room key it
/// holds and where its bucket rooms live, sealed under a passphrase.
///
/// File: one canonical JSON object,
/// `{"ciphertext":B64,"format":"parley.backup.v1","kdf":{"algorithm":"argon2id","iterations":I,"memory_kib":M,"parallelism":P,"salt":B64},"nonce":B64}`.
/// The key is Argon2id(passphrase, salt); the ciphertext is AES-256-GCM of the canonical JSON of the contents, with
/// the canonical JSON of the file without `ciphertext` as associated data, so the parameters cannot be altered.
public enum KeyBackup {
    public static let format = "parley.backup.v1"
    static let maxFileBytes = 64 << 20

    /// The backup file of `node`'s identity and keys.
    public static func export(node: Node, passphrase: [UInt8], parameters: Argon2idParameters = .standard) throws -> [UInt8] {
        guard passphrase.count >= Passphrase.minimumLength else {
            throw ClientError(.invalidArgument, "The passphrase is too short: use at least \(Passphrase.minimumLength) characters.")
        }
        var contents = JSONObject()
        contents["identity"] = node.identity.secretJSON
        contents["room_keys"] = .array(
            try node.store.allRoomKeys().map { item in
                ["room_id": .string(item.roomID), "key": .string(Base64.encode(item.key.bytes))]
            })
        contents["psk_secrets"] = .array(
            try node.store.allPreSharedSecrets().map { item in
                ["room_id": .string(item.roomID), "secret": .string(Base64.encode(item.secret)), "from_passphrase": .bool(item.fromPassphrase)]
            })
        contents["bucket_rooms"] = .array(try node.store.bucketRooms().map { BucketRoomRecord($0).json })
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let nonce = (0..<12).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        var kdf = parameters.jsonObject
        kdf["salt"] = .string(Base64.encode(salt))
        var header = JSONObject(["format": .string(format), "nonce": .string(Base64.encode(nonce))])
        header["kdf"] = .object(kdf)
        let key = SymmetricKey(data: try parameters.deriveKey(passphrase: passphrase, salt: salt))
        let box = try AES.GCM.seal(
            CanonicalJSON.encode(.object(contents)), using: key, nonce: AES.GCM.Nonce(data: nonce),
            authenticating: CanonicalJSON.encode(.object(header)))
        var file = header
        file["ciphertext"] = .string(Base64.encode(Array(box.ciphertext) + Array(box.tag)))
        return CanonicalJSON.encode(.object(file)) + [0x0A]
    }

    /// Restores a backup into `home`: installs the identity if the home has none, and adds the room keys and
    /// bucket rooms. A home with another identity is refused.
    public static func restore(_ file: [UInt8], passphrase: [UInt8], home: ParleyHome) throws -> RestoreReport {
        let damaged = ClientError(.invalidArgument, "This is not a Parley key backup, or it is truncated or damaged.")
        guard file.count <= maxFileBytes, let value = try? JSONParser(maxBytes: maxFileBytes).parse(Array(file.prefix { $0 != 0x0A })),
            case .object(let object) = value, object["format"] == .string(format), case .object(var kdf)? = object["kdf"],
            case .string(let nonceText)? = object["nonce"], let nonce = Base64.decode(nonceText), nonce.count == 12,
            case .string(let ciphertextText)? = object["ciphertext"], let ciphertext = Base64.decode(ciphertextText), ciphertext.count >= 16,
            case .string(let saltText)? = kdf["salt"], let salt = Base64.decode(saltText), salt.count >= 16, object.count == 4
        else { throw damaged }
        kdf["salt"] = nil
        guard kdf.count == 4, let parameters = Argon2idParameters(json: kdf) else { throw damaged }
        if let problem = parameters.problem { throw ClientError(.invalidArgument, "The backup is refused: \(problem).") }
        var header = object
        header["ciphertext"] = nil
        let key = SymmetricKey(data: try parameters.deriveKey(passphrase: passphrase, salt: salt))
        let plaintext: [UInt8]
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: nonce), ciphertext: ciphertext.dropLast(16), tag: ciphertext.suffix(16))
            plaintext = Array(try AES.GCM.open(box, using: key, authenticating: CanonicalJSON.encode(.object(header))))
        } catch {
            throw ClientError(.invalidArgument, "Wrong passphrase, or the backup was altered.", remedy: "Check the passphrase and try again.")
        }
        guard case .object(let contents) = try JSONParser(maxBytes: maxFileBytes).parse(plaintext), let identityJSON = contents["identity"]
        else { throw damaged }
        let identity = try Identity(secretJSON: identityJSON)

        var installed = false
        if FileManager.default.fileExists(atPath: home.secretKeyPath) {
            let existing = try Identity.load(home: home)
            guard existing.signingKeyBase64 == identity.signingKeyBase64 else {
                throw ClientError(
                    .alreadyInitialized, "\(home.path) holds another identity (\(existing.userID)); the backup is of \(identity.userID).",
                    remedy: "Restore into an empty --home.")
            }
        } else {
            try identity.install(home: home)
            installed = true
        }
        // A restore is how a device whose store was lost comes back: it may start an empty store, whose bucket rooms
        // the next sync fills (this device's own events included) before anything can be signed in them.
        let node = try Node(home: home, creatingStore: true)
        var keys: [String: [RoomKey]] = [:]
        for entry in contents["room_keys"]?.arrayValue ?? [] {
            guard let roomID = entry.objectValue?["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
                let bytes = entry.objectValue?["key"]?.stringValue.flatMap(Base64.decode), let key = try? RoomKey(bytes: bytes)
            else { throw damaged }
            keys[roomID, default: []].append(key)
        }
        for (roomID, roomKeys) in keys { try node.store.addRoomKeys(roomKeys, roomID: roomID, addedMs: node.clock()) }
        for entry in contents["psk_secrets"]?.arrayValue ?? [] {
            guard let roomID = entry.objectValue?["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
                let secret = entry.objectValue?["secret"]?.stringValue.flatMap(Base64.decode), secret.count == 32,
                case .bool(let fromPassphrase)? = entry.objectValue?["from_passphrase"]
            else { throw damaged }
            try node.addPreSharedSecret(secret, roomID: roomID, fromPassphrase: fromPassphrase)
        }
        var bucketRooms = 0
        for entry in contents["bucket_rooms"]?.arrayValue ?? [] {
            guard let room = BucketRoomRecord(json: entry) else { throw damaged }
            if try node.store.bucketRoom(roomID: room.roomID) == nil {
                try node.addBucketRoom(roomID: room.roomID, bucketURL: room.bucketURL, creatorFingerprint: room.creatorFingerprint)
                bucketRooms += 1
            }
        }
        return RestoreReport(userID: identity.userID, installedIdentity: installed, roomKeys: keys.values.reduce(0) { $0 + $1.count }, bucketRooms: bucketRooms)
    }
}
