import Crypto
import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore
import ParleySync

/// What a new device hands to one of its user's other devices to be linked (`parley device request` →
/// `parley device link REQUEST`): its user id, its public keys, and a one-time secret only it can compute, which the
/// link code must carry back. It holds no secret key, but whoever holds it can link the device to rooms for an hour
/// (``Node/linkRequestLifetimeMs``), and the linking device binds whatever keys it names: pass it privately.
///
/// Text form: `parley-device:` then unpadded base64url of the canonical JSON
/// `{"created_ms":T,"exchange_key":B64,"secret":B64,"signing_key":B64,"user_id":USER,"v":1}` (docs/PROTOCOL.md §14.8).
public struct LinkRequest: Sendable, Equatable {
    public static let prefix = "parley-device:"

    public var userID: String
    public var binding: DeviceBinding
    public var createdMs: Int64
    /// HMAC-SHA256, keyed with the new device's X25519 private key, of `parley.link-request.v1` LF `created_ms`.
    public var secret: [UInt8]

    public init(userID: String, binding: DeviceBinding, createdMs: Int64, secret: [UInt8]) {
        self.userID = userID
        self.binding = binding
        self.createdMs = createdMs
        self.secret = secret
    }

    public var text: String {
        CodeText.encode(
            prefix: LinkRequest.prefix,
            JSONObject([
                "created_ms": .integer(createdMs), "exchange_key": .string(binding.exchangeKey ?? ""), "secret": .string(Base64.encode(secret)),
                "signing_key": .string(binding.signingKey), "user_id": .string(userID), "v": .integer(1),
            ]))
    }

    /// Parses a request and checks its keys: a small-order or non-canonical key is refused.
    public init(parsing text: String) throws(ClientError) {
        let invalid = ClientError(
            .invalidArgument, "This is not a valid Parley device request.",
            remedy: "Run `parley device request` on the new device again; the request starts with \(LinkRequest.prefix)")
        guard let object = try? CodeText.decode(prefix: LinkRequest.prefix, text, maxBytes: 1024), object["v"] == .integer(1), object.count == 6,
            let userID = object["user_id"]?.stringValue, Identifier.problem(with: userID, kind: .user) == nil,
            case .integer(let createdMs)? = object["created_ms"], createdMs >= 0,
            let secret = object["secret"]?.stringValue.flatMap(Base64.decode), secret.count == 32,
            let signingKey = object["signing_key"]?.stringValue, let signingBytes = Base64.decode(signingKey), signingBytes.count == 32,
            let exchangeKey = object["exchange_key"]?.stringValue, let exchangeBytes = Base64.decode(exchangeKey), exchangeBytes.count == 32
        else { throw invalid }
        do { try StrictEd25519.checkPublicKey(signingBytes) } catch {
            throw ClientError(.invalidArgument, "The device request's signing key is refused: \(error).")
        }
        do { try X25519KeyCheck.check(exchangeBytes) } catch {
            throw ClientError(.invalidArgument, "The device request's exchange key is refused: \(error).")
        }
        self.userID = userID
        binding = DeviceBinding(signingKey: signingKey, exchangeKey: exchangeKey)
        self.createdMs = createdMs
        self.secret = secret
    }
}

extension Identity {
    /// The request, made at `nowMs`, that asks another device of this user to link this one.
    public func linkRequest(nowMs: Int64) -> LinkRequest {
        LinkRequest(userID: userID, binding: binding, createdMs: nowMs, secret: Array(linkRequestMAC(createdMs: nowMs)))
    }

    /// Whether `secret` is the one this device put in its request made at `createdMs` (compared in constant time).
    func madeLinkRequest(createdMs: Int64, secret: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(
            secret, authenticating: Self.linkRequestMessage(createdMs), using: SymmetricKey(data: exchangeKey.rawRepresentation))
    }

    private func linkRequestMAC(createdMs: Int64) -> HashedAuthenticationCode<SHA256> {
        HMAC<SHA256>.authenticationCode(for: Self.linkRequestMessage(createdMs), using: SymmetricKey(data: exchangeKey.rawRepresentation))
    }

    private static func linkRequestMessage(_ createdMs: Int64) -> [UInt8] { Array("parley.link-request.v1\n\(createdMs)".utf8) }
}

/// What a linking device gives the new device once it has bound it (`parley device link REQUEST` →
/// `parley init --link CODE`): the rooms to join, with their locations, and the secrets of pre-shared-key rooms. The
/// new device made its own keys, and they never leave it; the code is sealed to the new device's exchange key and
/// signed by the linking device, so it may travel over any channel, and it expires after ``Node/linkCodeLifetimeMs``.
///
/// Text form (docs/PROTOCOL.md §14.8): `parley-link:` then unpadded base64url of the canonical JSON
/// `{"enc":B64,"sealed":B64,"to":KEY,"v":3}`, `sealed` being HPKE (the suite of §14.4) of the signed payload. Codes
/// of version 2, whose payload lists `bucket_rooms`, are still read.
public struct LinkCode: Sendable {
    public static let prefix = "parley-link:"
    /// The version written.
    public static let version: Int64 = 3
    /// The largest object a code may decode to, in bytes.
    static let maxBytes = 1 << 20

    /// The user both devices speak for.
    public let userID: String
    /// The new device's signing key: the code opens only with its exchange key.
    public let recipientKey: String
    /// The signing key of the device that made the code, whose signature the new device checks.
    public let linkedBy: String
    /// The request the code answers: its time and secret, which only the new device can compute.
    public let requestCreatedMs: Int64
    let requestSecret: [UInt8]
    public let expiresMs: Int64
    /// The rooms the new device joins.
    public let rooms: [LinkedRoom]
    /// Secrets of pre-shared-key rooms: the new device cannot get them any other way.
    public let preSharedSecrets: [(roomID: String, secret: [UInt8], fromPassphrase: Bool)]
    /// The sealed text, made once from the fields above.
    public private(set) var text: String = ""

    /// Signs the code with `signer` (the device `linkedBy` names) and seals it to `request`'s exchange key.
    init(
        sealingFor request: LinkRequest, signer: DeviceSigningKey, expiresMs: Int64, rooms: [LinkedRoom],
        preSharedSecrets: [(roomID: String, secret: [UInt8], fromPassphrase: Bool)]
    ) throws {
        userID = request.userID
        recipientKey = request.binding.signingKey
        linkedBy = signer.publicKeyBase64
        requestCreatedMs = request.createdMs
        requestSecret = request.secret
        self.expiresMs = expiresMs
        self.rooms = rooms
        self.preSharedSecrets = preSharedSecrets
        var payload = self.payload
        payload["signature"] = .string(Base64.encode(signer.sign(LinkCode.label(version: LinkCode.version) + CanonicalJSON.encode(.object(payload)))))
        let exchangeKey = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: Base64.decode(request.binding.exchangeKey ?? "") ?? [])
        var sender = try HPKE.Sender(
            recipientKey: exchangeKey, ciphersuite: KeySeal.ciphersuite, info: Data(LinkCode.label(version: LinkCode.version) + Array(recipientKey.utf8)))
        let sealed = try sender.seal(CanonicalJSON.encode(.object(payload)))
        text = CodeText.encode(
            prefix: LinkCode.prefix,
            JSONObject([
                "enc": .string(Base64.encode(sender.encapsulatedKey)), "sealed": .string(Base64.encode(sealed)), "to": .string(recipientKey),
                "v": .integer(LinkCode.version),
            ]))
    }

    /// Opens a code with this device's identity, checks the linking device's signature, and refuses a code made for
    /// another device or user, or expired.
    public init(opening text: String, identity: Identity, nowMs: Int64) throws(ClientError) {
        let invalid = ClientError(.invalidArgument, "This is not a valid Parley link code.", remedy: "Run `parley device link` on your other device again.")
        guard let outer = try? CodeText.decode(prefix: LinkCode.prefix, text, maxBytes: LinkCode.maxBytes) else { throw invalid }
        guard case .integer(let version)? = outer["v"], version == 2 || version == LinkCode.version else {
            throw ClientError(.invalidArgument, "This link code is of another version.", remedy: "Update Parley on both devices, then link again.")
        }
        let label = LinkCode.label(version: version)
        guard let to = outer["to"]?.stringValue, let enc = outer["enc"]?.stringValue.flatMap(Base64.decode), enc.count == 32,
            let sealed = outer["sealed"]?.stringValue.flatMap(Base64.decode)
        else { throw invalid }
        guard to == identity.signingKeyBase64 else {
            throw ClientError(
                .invalidArgument, "This link code was made for another device (\(to)), not this one.",
                remedy: "Give `parley device link` the request of this device (`parley device request`).")
        }
        guard (try? X25519KeyCheck.check(enc)) != nil,
            var recipient = try? HPKE.Recipient(
                privateKey: identity.exchangeKey, ciphersuite: KeySeal.ciphersuite, info: Data(label + Array(to.utf8)), encapsulatedKey: Data(enc)),
            let plaintext = try? recipient.open(sealed), var payload = try? JSONParser().parse(Array(plaintext)).objectValue
        else { throw ClientError(.invalidArgument, "This link code does not open with this device's key: it was altered or damaged.") }
        guard let signature = payload["signature"]?.stringValue.flatMap(Base64.decode), let linkedBy = payload["linked_by"]?.stringValue,
            let linkedByBytes = Base64.decode(linkedBy), linkedByBytes.count == 32
        else { throw invalid }
        payload["signature"] = nil
        do {
            try StrictEd25519.verify(
                signature: signature, message: label + CanonicalJSON.encode(.object(payload)), publicKey: linkedByBytes)
        } catch {
            throw ClientError(.invalidArgument, "The link code's signature does not verify: it was not made by the device it names (\(error)).")
        }
        guard let userID = payload["user_id"]?.stringValue, Identifier.problem(with: userID, kind: .user) == nil, payload["to"]?.stringValue == to,
            case .integer(let expires)? = payload["expires_ms"],
            let rooms = payload[version == 2 ? "bucket_rooms" : "rooms"]?.arrayValue, let secrets = payload["psk_secrets"]?.arrayValue,
            case .integer(let requestCreatedMs)? = payload["request_created_ms"],
            let requestSecret = payload["request_secret"]?.stringValue.flatMap(Base64.decode)
        else { throw invalid }
        // The signature says who made the code; the request's secret says they were given this device's request, which
        // an attacker who only knows its public keys cannot forge.
        guard identity.madeLinkRequest(createdMs: requestCreatedMs, secret: requestSecret) else {
            throw ClientError(
                .invalidArgument, "This link code was not made from this device's request.",
                remedy: "Run `parley device request` here and give that request to `parley device link` on your other device.")
        }
        guard userID == identity.userID else {
            throw ClientError(.invalidArgument, "This link code links a device of \(userID), and this device speaks for \(identity.userID).")
        }
        self.userID = userID
        recipientKey = to
        self.linkedBy = linkedBy
        self.requestCreatedMs = requestCreatedMs
        self.requestSecret = requestSecret
        expiresMs = expires
        self.text = text
        self.rooms = try rooms.map { entry throws(ClientError) in
            do throws(CodeError) {
                return version == 2 ? try LinkedRoom(versionTwoJSON: entry) : try LinkedRoom(json: entry)
            } catch {
                throw ClientError(.invalidArgument, "This link code lists a room that is not valid: \(error.message)", remedy: invalid.remedy)
            }
        }
        preSharedSecrets = try secrets.map { entry throws(ClientError) in
            guard let roomID = entry.objectValue?["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
                let secret = entry.objectValue?["secret"]?.stringValue.flatMap(Base64.decode), secret.count == 32,
                case .bool(let fromPassphrase)? = entry.objectValue?["from_passphrase"]
            else { throw invalid }
            return (roomID, secret, fromPassphrase)
        }
        // The code's own expiry is the linking side's word; the request's age is this device's, so a request seen
        // by someone else stops being usable an hour (and a code's lifetime) after it was made.
        guard nowMs <= expiresMs, nowMs - requestCreatedMs <= Node.linkRequestLifetimeMs + Node.linkCodeLifetimeMs else {
            throw ClientError(
                .invalidArgument, "This link code has expired.", remedy: "Run `parley device request` here and `parley device link` on your other device again."
            )
        }
        guard requestCreatedMs <= nowMs + InputBounds.maxClockLeadMs else {
            throw ClientError(.invalidArgument, "This link code answers a request dated in the future.", remedy: "Check this device's clock, then link again.")
        }
    }

    /// The payload the linking device signs.
    private var payload: JSONObject {
        let rooms: [JSONValue] = rooms.map(\.json)
        let secrets: [JSONValue] = preSharedSecrets.map { item in
            ["room_id": .string(item.roomID), "secret": .string(Base64.encode(item.secret)), "from_passphrase": .bool(item.fromPassphrase)]
        }
        return JSONObject([
            "expires_ms": .integer(expiresMs), "linked_by": .string(linkedBy), "psk_secrets": .array(secrets),
            "request_created_ms": .integer(requestCreatedMs), "request_secret": .string(Base64.encode(requestSecret)), "rooms": .array(rooms),
            "to": .string(recipientKey), "user_id": .string(userID),
        ])
    }

    /// `parley.link.vN` LF: the prefix of what the linking device signs and, followed by the recipient's key, the HPKE
    /// `info` that binds the sealed payload to its recipient. Each version has its own, so a payload of one version is
    /// never read as another.
    private static func label(version: Int64) -> [UInt8] { Array("parley.link.v\(version)\n".utf8) }
}

/// One device of this node's user, as the rooms it holds bind it.
public struct UserDevice: Sendable, Equatable {
    public var signingKey: String
    public var exchangeKey: String?
    /// Rooms the device has joined, and rooms it is invited to (linked, not joined yet).
    public var joinedRooms: [String]
    public var invitedRooms: [String]
    public var isThisDevice: Bool
}

extension Node {
    /// How long a link code stays valid.
    public static let linkCodeLifetimeMs: Int64 = 10 * 60_000
    /// How long a device request can be answered.
    public static let linkRequestLifetimeMs: Int64 = 60 * 60_000

    /// Links the device that made `request` to this user: binds its keys in every room this device has joined (an
    /// invite of the same user listing them), gives it the room keys the rooms' history settings allow, and returns
    /// the code, sealed to it, that tells it which rooms to join.
    public func linkDevice(_ request: LinkRequest) throws -> LinkCode {
        guard request.userID == identity.userID else {
            throw ClientError(
                .invalidArgument, "This request is from a device of \(request.userID), not of \(identity.userID).",
                remedy: "Initialise the new device with `parley init --user \(identity.userID)`.")
        }
        guard request.binding.signingKey != identity.signingKeyBase64 else {
            throw ClientError(.invalidArgument, "This request is this device's own.", remedy: "Run `parley device request` on the new device.")
        }
        let now = clock()
        guard now - request.createdMs <= Node.linkRequestLifetimeMs else {
            throw ClientError(.invalidArgument, "This device request is more than an hour old.", remedy: "Run `parley device request` on the new device again.")
        }
        guard request.createdMs <= now + InputBounds.maxClockLeadMs else {
            throw ClientError(
                .invalidArgument, "This device request is dated in the future.", remedy: "Check both devices' clocks, then run `parley device request` again.")
        }
        for roomID in try store.roomIDs() {
            guard let state = try store.roomState(roomID: roomID), state.isJoinedDevice(user: identity.userID, key: identity.signingKeyBase64)
            else { continue }
            try publish(
                roomID: roomID, type: EventType.member,
                content: MemberContent(membership: .invite, userID: identity.userID, devices: [request.binding]).jsonObject)
            if state.encryption?.mode == .epochs { try rotateEpoch(roomID) }
        }
        return try LinkCode(
            sealingFor: request, signer: identity.signingKey, expiresMs: clock() + Node.linkCodeLifetimeMs,
            rooms: try store.bucketRooms().map { room in
                LinkedRoom(roomID: room.roomID, creatorFingerprint: room.creatorFingerprint, locations: [.bucket(url: room.bucketURL)])
            },
            preSharedSecrets: try store.allPreSharedSecrets())
    }

    /// This user's devices in the rooms this node holds.
    public func devices() throws -> [UserDevice] {
        var found: [String: UserDevice] = [:]
        for roomID in try store.roomIDs() {
            guard let member = try store.roomState(roomID: roomID)?.members[identity.userID] else { continue }
            for (key, binding) in member.devices where member.membership == .join {
                found[
                    key,
                    default: UserDevice(
                        signingKey: key, exchangeKey: binding.exchangeKey, joinedRooms: [], invitedRooms: [], isThisDevice: key == identity.signingKeyBase64)
                ]
                .joinedRooms.append(roomID)
            }
            for (key, binding) in member.invitedDevices where member.membership == .join || member.membership == .invite {
                found[
                    key,
                    default: UserDevice(
                        signingKey: key, exchangeKey: binding.exchangeKey, joinedRooms: [], invitedRooms: [], isThisDevice: key == identity.signingKeyBase64)
                ]
                .invitedRooms.append(roomID)
            }
        }
        return found.values.sorted { ($0.isThisDevice ? 0 : 1, $0.signingKey) < ($1.isThisDevice ? 0 : 1, $1.signingKey) }
    }

    /// Removes another device of this user from every room that binds it; epoch-keyed rooms start a new epoch at once,
    /// so the removed device receives no key from then on.
    /// - Returns: the rooms it was removed from.
    @discardableResult
    public func removeDevice(_ key: String) throws -> [String] {
        guard key.trimmingCharacters(in: .whitespacesAndNewlines) != identity.signingKeyBase64 else {
            throw ClientError(.invalidArgument, "This is the device you are using.", remedy: "Remove it from another device, or leave the rooms.")
        }
        let signingKey = try checkSigningKey(key, of: .ownDevice)
        var rooms: [String] = []
        for roomID in try store.roomIDs() {
            guard let state = try store.roomState(roomID: roomID), let member = state.members[identity.userID],
                member.devices[signingKey] != nil || member.invitedDevices[signingKey] != nil
            else { continue }
            try publish(
                roomID: roomID, type: EventType.member,
                content: MemberContent(membership: .leave, userID: identity.userID, devices: [DeviceBinding(signingKey: signingKey)]).jsonObject)
            if state.encryption?.mode == .epochs { try rotateEpoch(roomID) }
            rooms.append(roomID)
        }
        guard !rooms.isEmpty else {
            throw ClientError(
                .invalidArgument, "No room binds device \(signingKey) to \(identity.userID).",
                remedy: "`parley device list` shows the signing keys of your devices.")
        }
        return rooms
    }

    /// Takes in a link code made for this device: registers each room at the first of its locations this version can
    /// use (a bucket), and the pre-shared secrets; the caller then syncs and joins them
    /// (``BucketClient/joinLinkedRooms()``).
    /// - Returns: for each room the code lists at no location this node can use, why: those rooms are not registered.
    @discardableResult
    public func acceptLink(_ code: LinkCode) throws -> [ClientError] {
        var unusable: [ClientError] = []
        for room in code.rooms where try store.bucketRoom(roomID: room.roomID) == nil {
            do {
                try addBucketRoom(roomID: room.roomID, bucketURL: try room.bucket().text, creatorFingerprint: room.creatorFingerprint)
            } catch let error as ClientError where error.code == .noUsableLocation {
                unusable.append(error)
            }
        }
        for item in code.preSharedSecrets { try addPreSharedSecret(item.secret, roomID: item.roomID, fromPassphrase: item.fromPassphrase) }
        return unusable
    }
}

extension BucketClient {
    /// Syncs every bucket room and joins those where this device is invited and not joined yet (a linked device).
    /// - Returns: the rooms joined.
    public func joinLinkedRooms() async throws -> [String] {
        var joined: [String] = []
        for room in try node.store.bucketRooms() {
            _ = try await sync(room.roomID)
            guard let state = try node.store.roomState(roomID: room.roomID),
                state.members[node.identity.userID]?.invitedDevices[node.identity.signingKeyBase64] != nil
            else { continue }
            try node.join(room.roomID)
            _ = try await flush(room.roomID)
            joined.append(room.roomID)
        }
        return joined
    }
}
