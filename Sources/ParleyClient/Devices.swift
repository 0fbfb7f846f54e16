import Crypto
import Foundation
import ParleyBucket
import ParleyCore
import ParleyStore

/// A one-time code that sets up another device of the same user (`parley device link` → `parley init --link`).
///
/// The linking device makes the new device's keys, binds them to the user in every room it has joined, and hands
/// them over in the code, with the bucket rooms the new device should join. The code is as secret as a device key:
/// it is shown once, expires after ``Node/linkCodeLifetimeMs``, and is refused after that.
///
/// Text form: `parley-link:` followed by unpadded base64url of the canonical JSON
/// `{"bucket_rooms":[…],"device":{…secret identity…},"expires_ms":T,"linked_by":KEY,"v":1}`.
public struct LinkCode: Sendable {
    public static let prefix = "parley-link:"

    public var device: Identity
    /// The signing key of the device that made the code.
    public var linkedBy: String
    public var expiresMs: Int64
    public var bucketRooms: [LinkedRoom]
    /// Secrets of pre-shared-key rooms: the new device cannot get them any other way.
    public var preSharedSecrets: [(roomID: String, secret: [UInt8], fromPassphrase: Bool)]

    /// A bucket room the new device joins.
    public struct LinkedRoom: Sendable, Equatable {
        public var roomID: String
        public var bucketURL: String
        public var creatorFingerprint: String
    }

    public var text: String {
        let rooms: [JSONValue] = bucketRooms.map { room in
            ["room_id": .string(room.roomID), "bucket": .string(room.bucketURL), "creator": .string(room.creatorFingerprint)]
        }
        let secrets: [JSONValue] = preSharedSecrets.map { item in
            ["room_id": .string(item.roomID), "secret": .string(Base64.encode(item.secret)), "from_passphrase": .bool(item.fromPassphrase)]
        }
        let json: JSONValue = [
            "v": 1, "device": device.secretJSON, "linked_by": .string(linkedBy), "expires_ms": .integer(expiresMs), "bucket_rooms": .array(rooms),
            "psk_secrets": .array(secrets),
        ]
        let base64 = Base64.encode(CanonicalJSON.encode(json))
        return LinkCode.prefix + String(base64.compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }

    public init(
        device: Identity, linkedBy: String, expiresMs: Int64, bucketRooms: [LinkedRoom],
        preSharedSecrets: [(roomID: String, secret: [UInt8], fromPassphrase: Bool)]
    ) {
        self.device = device
        self.linkedBy = linkedBy
        self.expiresMs = expiresMs
        self.bucketRooms = bucketRooms
        self.preSharedSecrets = preSharedSecrets
    }

    /// Parses a code and refuses it once expired.
    public init(parsing text: String, nowMs: Int64) throws {
        let invalid = ClientError(.invalidArgument, "This is not a valid Parley link code.", remedy: "Run `parley device link` on your other device again.")
        guard text.hasPrefix(LinkCode.prefix) else { throw invalid }
        var base64 = String(text.dropFirst(LinkCode.prefix.count).map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        guard base64.utf8.count <= 1 << 20, let bytes = Base64.decode(base64), let json = try? JSONParser().parse(bytes),
            let object = json.objectValue, object["v"] == .integer(1), let deviceJSON = object["device"],
            let linkedBy = object["linked_by"]?.stringValue, case .integer(let expires)? = object["expires_ms"],
            let rooms = object["bucket_rooms"]?.arrayValue
        else { throw invalid }
        device = try Identity(secretJSON: deviceJSON)
        self.linkedBy = linkedBy
        expiresMs = expires
        bucketRooms = try rooms.map { entry in
            guard let roomID = entry.objectValue?["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
                let bucket = entry.objectValue?["bucket"]?.stringValue, let creator = entry.objectValue?["creator"]?.stringValue,
                Hex.isLowercaseHex(creator, byteCount: 32)
            else { throw invalid }
            return LinkedRoom(roomID: roomID, bucketURL: bucket, creatorFingerprint: creator)
        }
        preSharedSecrets = try (object["psk_secrets"]?.arrayValue ?? []).map { entry in
            guard let roomID = entry.objectValue?["room_id"]?.stringValue, Identifier.problem(with: roomID, kind: .room) == nil,
                let secret = entry.objectValue?["secret"]?.stringValue.flatMap(Base64.decode), secret.count == 32,
                case .bool(let fromPassphrase)? = entry.objectValue?["from_passphrase"]
            else { throw invalid }
            return (roomID, secret, fromPassphrase)
        }
        guard nowMs <= expiresMs else {
            throw ClientError(.invalidArgument, "This link code has expired.", remedy: "Run `parley device link` on your other device again.")
        }
    }
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

    /// Makes a new device for this user: binds its keys in every room this device has joined (an invite of the same
    /// user with the new device's keys), gives it the room keys the rooms' history settings allow, and returns the
    /// code that installs it.
    public func linkDevice() throws -> LinkCode {
        let device = Identity.generate(userID: identity.userID)
        for roomID in try store.roomIDs() {
            guard let state = try store.roomState(roomID: roomID), state.isJoinedDevice(user: identity.userID, key: identity.signingKeyBase64)
            else { continue }
            try publish(
                roomID: roomID, type: EventType.member,
                content: MemberContent(membership: .invite, userID: identity.userID, devices: [device.binding]).jsonObject)
            if state.encryption?.mode == .epochs { try rotateEpoch(roomID) }
        }
        return LinkCode(
            device: device, linkedBy: identity.signingKeyBase64, expiresMs: clock() + Node.linkCodeLifetimeMs,
            bucketRooms: try store.bucketRooms().map { LinkCode.LinkedRoom(roomID: $0.roomID, bucketURL: $0.bucketURL, creatorFingerprint: $0.creatorFingerprint) },
            preSharedSecrets: try store.allPreSharedSecrets())
    }

    /// This user's devices in the rooms this node holds.
    public func devices() throws -> [UserDevice] {
        var found: [String: UserDevice] = [:]
        for roomID in try store.roomIDs() {
            guard let member = try store.roomState(roomID: roomID)?.members[identity.userID] else { continue }
            for (key, binding) in member.devices where member.membership == .join {
                found[key, default: UserDevice(signingKey: key, exchangeKey: binding.exchangeKey, joinedRooms: [], invitedRooms: [], isThisDevice: key == identity.signingKeyBase64)]
                    .joinedRooms.append(roomID)
            }
            for (key, binding) in member.invitedDevices where member.membership == .join || member.membership == .invite {
                found[key, default: UserDevice(signingKey: key, exchangeKey: binding.exchangeKey, joinedRooms: [], invitedRooms: [], isThisDevice: key == identity.signingKeyBase64)]
                    .invitedRooms.append(roomID)
            }
        }
        return found.values.sorted { ($0.isThisDevice ? 0 : 1, $0.signingKey) < ($1.isThisDevice ? 0 : 1, $1.signingKey) }
    }

    /// Removes another device of this user from every room that binds it; epoch-keyed rooms start a new epoch at once,
    /// so the removed device receives no key from then on.
    /// - Returns: the rooms it was removed from.
    @discardableResult
    public func removeDevice(_ signingKey: String) throws -> [String] {
        guard signingKey != identity.signingKeyBase64 else {
            throw ClientError(.invalidArgument, "This is the device you are using.", remedy: "Remove it from another device, or leave the rooms.")
        }
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
        guard !rooms.isEmpty else { throw ClientError(.invalidArgument, "No room binds device \(signingKey) to \(identity.userID).") }
        return rooms
    }

    /// Installs a linked device from its code under `home` and registers its bucket rooms; the caller then syncs
    /// and joins them (``BucketClient/joinLinkedRooms()``).
    public static func installLinked(_ code: LinkCode, home: ParleyHome, clock: @escaping @Sendable () -> Int64 = Node.systemClock) throws -> Node {
        guard !FileManager.default.fileExists(atPath: home.secretKeyPath) else {
            throw ClientError(.alreadyInitialized, "\(home.path) already holds an identity.", remedy: "Link into an empty --home.")
        }
        try code.device.install(home: home)
        let node = try Node(home: home, clock: clock)
        for room in code.bucketRooms where try node.store.bucketRoom(roomID: room.roomID) == nil {
            try node.store.addBucketRoom(roomID: room.roomID, bucketURL: room.bucketURL, creatorFingerprint: room.creatorFingerprint)
        }
        for item in code.preSharedSecrets { try node.addPreSharedSecret(item.secret, roomID: item.roomID, fromPassphrase: item.fromPassphrase) }
        return node
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
