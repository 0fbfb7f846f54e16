import Crypto
import Foundation
import ParleyCore

/// This device's identity: the user id it speaks for, its Ed25519 signing key and its X25519 key.
public struct Identity: Sendable {
    public let userID: String
    public let signingKey: DeviceSigningKey
    public let exchangeKey: Curve25519.KeyAgreement.PrivateKey

    public var signingKeyBase64: String { signingKey.publicKeyBase64 }
    public var exchangeKeyBase64: String { Base64.encode(exchangeKey.publicKey.rawRepresentation) }
    public var binding: DeviceBinding { DeviceBinding(signingKey: signingKeyBase64, exchangeKey: exchangeKeyBase64) }

    /// Creates a new identity for `userID` under `home`: `identity.json` (public) and `device.key` (secret,
    /// mode 0600).
    /// - Throws: ``ClientError`` if `userID` is invalid or an identity already exists.
    public static func create(userID: String, home: ParleyHome) throws -> Identity {
        if let problem = Identifier.problem(with: userID, kind: .user) { throw ClientError(.invalidArgument, "Invalid user id: \(problem).") }
        try home.create()
        guard !FileManager.default.fileExists(atPath: home.secretKeyPath) else {
            throw ClientError(.alreadyInitialized, "\(home.path) already holds an identity.", remedy: "Use another --home, or keep this one.")
        }
        let identity = Identity.generate(userID: userID)
        try identity.install(home: home)
        return identity
    }

    /// Fresh keys for `userID`; weak ones cannot come out of a proper generator, but the check costs nothing.
    static func generate(userID: String) -> Identity {
        var signing: DeviceSigningKey
        var exchange: Curve25519.KeyAgreement.PrivateKey
        repeat {
            signing = DeviceSigningKey(Curve25519.Signing.PrivateKey())
            exchange = Curve25519.KeyAgreement.PrivateKey()
        } while (try? StrictEd25519.checkPublicKey(signing.publicKeyBytes)) == nil
            || (try? X25519KeyCheck.check(Array(exchange.publicKey.rawRepresentation))) == nil
        return Identity(userID: userID, signingKey: signing, exchangeKey: exchange)
    }

    /// Writes this identity's files under `home`, which must not hold one yet, and an empty store beside them: from
    /// now on a missing store means a lost one (``Node/init(home:clock:creatingStore:)``).
    func install(home: ParleyHome) throws {
        try home.create()
        if !FileManager.default.fileExists(atPath: home.storePath) { try home.createStoreFile() }
        try home.createFile(atPath: home.secretKeyPath, contents: CanonicalJSON.encode(secretJSON) + [0x0A], mode: 0o600)
        try home.createFile(atPath: home.identityPath, contents: CanonicalJSON.encode(publicJSON) + [0x0A], mode: 0o644)
    }

    /// The secret form: what `device.key` holds, and what a key backup carries.
    var secretJSON: JSONValue {
        [
            "user_id": .string(userID),
            "signing_seed": .string(Base64.encode(signingKey.privateKey.rawRepresentation)),
            "exchange_private_key": .string(Base64.encode(exchangeKey.rawRepresentation)),
        ]
    }

    /// Loads the identity under `home`.
    /// - Throws: ``ClientError`` when there is none, or the secret file is unreadable or too widely readable.
    public static func load(home: ParleyHome) throws -> Identity {
        guard let data = FileManager.default.contents(atPath: home.secretKeyPath) else {
            throw ClientError(.notInitialized, "No identity in \(home.path).", remedy: "Run `parley init --user USER_ID` first.")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: home.secretKeyPath)
        if let mode = attributes?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw ClientError(
                .io, "\(home.secretKeyPath) is readable by other users (mode \(String(mode, radix: 8))).",
                remedy: "Run `chmod 600 \(home.secretKeyPath)`.")
        }
        do {
            return try Identity(secretJSON: try JSONParser().parse(Array(data)))
        } catch let error as ClientError {
            throw ClientError(.io, "\(home.secretKeyPath): \(error.message)")
        } catch {
            throw ClientError(.io, "\(home.secretKeyPath) is not a valid Parley key file.")
        }
    }

    public var publicJSON: JSONValue {
        ["user_id": .string(userID), "signing_key": .string(signingKeyBase64), "exchange_key": .string(exchangeKeyBase64)]
    }
}

extension Identity {
    /// Reads the secret form.
    init(secretJSON secret: JSONValue) throws {
        guard let userID = secret.objectValue?["user_id"]?.stringValue, Identifier.problem(with: userID, kind: .user) == nil,
            let seed = secret.objectValue?["signing_seed"]?.stringValue.flatMap(Base64.decode),
            let exchange = secret.objectValue?["exchange_private_key"]?.stringValue.flatMap(Base64.decode)
        else { throw ClientError(.io, "The identity is incomplete.") }
        self.init(
            userID: userID, signingKey: try DeviceSigningKey(seed: seed),
            exchangeKey: try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: exchange))
    }
}
