/// A relay's challenge to a device that asks to be added to an account (docs/PROTOCOL.md §15.3): the device proves it
/// holds its key by signing the challenge, which binds the key to one account of one relay for a short time.
///
/// JSON form: `{"expires_ms":MS,"nonce":BASE64,"origin":URL,"user_id":USER}`.
public struct RelayChallenge: Sendable, Equatable {
    /// The domain-separation prefix of a challenge's signing input: `parley.relay.device.v1` and LF. No event, archive
    /// manifest or other signed input begins with it.
    public static let signaturePrefix: [UInt8] = Array("parley.relay.device.v1\n".utf8)
    /// The size of a nonce, in bytes.
    public static let nonceBytes = 32
    /// The longest origin, in bytes.
    public static let maxOriginBytes = 512

    /// The relay's base URL as the relay names itself (`https://relay.example.net`): a signature made for one relay is
    /// worth nothing at another.
    public var origin: String
    /// The account the device joins.
    public var userID: String
    /// Strict base64 of ``nonceBytes`` random bytes, used once.
    public var nonce: String
    /// When the challenge stops being accepted, Unix ms.
    public var expiresMs: Int64

    public init(origin: String, userID: String, nonce: String, expiresMs: Int64) {
        self.origin = origin
        self.userID = userID
        self.nonce = nonce
        self.expiresMs = expiresMs
    }

    /// The JSON form.
    public var json: JSONValue {
        ["expires_ms": .integer(expiresMs), "nonce": .string(nonce), "origin": .string(origin), "user_id": .string(userID)]
    }

    /// Reads a challenge and checks its form.
    /// - Throws: ``RelayProtocolError`` `invalid_member` naming the member at fault.
    public init(json value: JSONValue) throws(RelayProtocolError) {
        guard case .object(let object) = value, object.count == 4 else {
            throw RelayProtocolError(.invalidMember, "A challenge is an object of exactly expires_ms, nonce, origin and user_id.")
        }
        guard case .string(let origin)? = object["origin"], !origin.isEmpty, origin.utf8.count <= Self.maxOriginBytes,
            origin.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else { throw RelayProtocolError(.invalidMember, "A challenge's origin is not 1 to \(Self.maxOriginBytes) printable ASCII characters.") }
        guard case .string(let userID)? = object["user_id"], Identifier.problem(with: userID, kind: .user) == nil else {
            throw RelayProtocolError(.invalidMember, "A challenge's user_id is not a user id.")
        }
        guard case .string(let nonce)? = object["nonce"], Base64.isCanonical(nonce, byteCount: Self.nonceBytes) else {
            throw RelayProtocolError(.invalidMember, "A challenge's nonce is not strict base64 of \(Self.nonceBytes) bytes.")
        }
        guard case .integer(let expiresMs)? = object["expires_ms"], expiresMs >= 0 else {
            throw RelayProtocolError(.invalidMember, "A challenge's expires_ms is not a non-negative integer.")
        }
        self.init(origin: origin, userID: userID, nonce: nonce, expiresMs: expiresMs)
    }

    /// What the device signs: the prefix, then the canonical form of the challenge's members and `device_key`.
    public func signingInput(deviceKey: String) -> [UInt8] {
        var object = json.objectValue ?? JSONObject()
        object["device_key"] = .string(deviceKey)
        return Self.signaturePrefix + CanonicalJSON.encode(.object(object))
    }

    /// Checks a device's answer to the challenge: its key is a strict Ed25519 key and `signature` (strict base64 of
    /// 64 bytes) signs ``signingInput(deviceKey:)`` under it. Whether the challenge is this relay's, unused and
    /// unexpired is the relay's to check.
    /// - Throws: ``RelayProtocolError`` `bad_signature` saying what failed.
    public func verify(deviceKey: String, signature: String) throws(RelayProtocolError) {
        guard Base64.isCanonical(deviceKey, byteCount: 32), let key = Base64.decode(deviceKey) else {
            throw RelayProtocolError(.invalidMember, "device_key is not strict base64 of 32 bytes.")
        }
        guard Base64.isCanonical(signature, byteCount: 64), let signatureBytes = Base64.decode(signature) else {
            throw RelayProtocolError(.invalidMember, "signature is not strict base64 of 64 bytes.")
        }
        do {
            try StrictEd25519.verify(signature: signatureBytes, message: signingInput(deviceKey: deviceKey), publicKey: key)
        } catch {
            throw RelayProtocolError(.badSignature, "The challenge's signature does not verify: \(error).")
        }
    }
}

/// A relay message that breaks the protocol (docs/PROTOCOL.md §15): what a relay answers with an `error` frame, and a
/// client reports.
public struct RelayProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ rawValue: String) { self.rawValue = rawValue }

        /// Not one JSON object of at most the frame size (§15.4).
        public static let malformedFrame = Code("malformed_frame")
        /// A frame `type` this version does not know.
        public static let unknownType = Code("unknown_type")
        /// A member missing, of the wrong type or form.
        public static let invalidMember = Code("invalid_member")
        /// A signature that does not verify.
        public static let badSignature = Code("bad_signature")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
