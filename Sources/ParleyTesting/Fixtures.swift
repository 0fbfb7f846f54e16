import Crypto
import ParleyCore

/// A test device: a user id and a deterministic signing key, able to write its own chain in any room.
public struct TestDevice: Sendable {
    public let userID: String
    public let key: DeviceSigningKey
    public let exchangeKey: String
    var heads: [String: (seq: Int64, hash: String)] = [:]

    /// A device whose keys derive from `name`, so test runs are repeatable.
    public init(_ userID: String, keyName: String? = nil) {
        self.userID = userID
        let seed = Array(SHA256.hash(data: Array("parley test signing key \(keyName ?? userID)".utf8)))
        key = try! DeviceSigningKey(seed: seed)
        let exchangeSeed = Array(SHA256.hash(data: Array("parley test exchange key \(keyName ?? userID)".utf8)))
        exchangeKey = Base64.encode(try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: exchangeSeed).publicKey.rawRepresentation)
    }

    public var publicKey: String { key.publicKeyBase64 }
    public var binding: DeviceBinding { DeviceBinding(signingKey: publicKey, exchangeKey: exchangeKey) }

    /// Signs the next event of this device's chain in `roomID`; with `copying`, under another event's id (and so at
    /// its time), as a device squatting that id would.
    public mutating func sign(
        _ roomID: String, _ type: String, _ content: JSONObject, at timestampMs: Int64, parent: String? = nil,
        eventIDSeed: Int? = nil, copying original: Event? = nil
    ) -> VerifiedEvent {
        let head = heads[roomID]
        let seq = (head?.seq ?? 0) + 1
        let idSeed = Array(SHA256.hash(data: Array("\(userID) \(publicKey) \(roomID) \(seq) \(eventIDSeed ?? 0)".utf8)).prefix(16))
        let timestampMs = original?.timestampMs ?? timestampMs
        let eventID = original?.eventID ?? EventID.make(roomID: roomID, timestampMs: timestampMs, randomBytes: idSeed)
        let event = key.signEvent(
            roomID: roomID, type: type, content: content, parentEventID: parent, senderID: userID, seq: seq,
            previousHash: head?.hash, timestampMs: timestampMs, eventID: eventID)
        heads[roomID] = (seq, event.hash)
        return event
    }

    /// Rewinds this device's chain in `roomID` to `seq` (the next event signs `seq + 1`), to build forks.
    public mutating func rewind(_ roomID: String, to seq: Int64, hash: String?) {
        heads[roomID] = hash.map { (seq, $0) }
    }

    public mutating func message(
        _ roomID: String, _ body: String, at timestampMs: Int64, parent: String? = nil, copying original: Event? = nil
    ) -> VerifiedEvent {
        sign(roomID, EventType.message, JSONObject(["msgtype": "text", "body": .string(body)]), at: timestampMs, parent: parent, copying: original)
    }

    public mutating func create(_ roomID: String, at timestampMs: Int64) -> [VerifiedEvent] {
        [
            sign(roomID, EventType.create, JSONObject(["version": 1]), at: timestampMs),
            join(roomID, at: timestampMs),
        ]
    }

    public mutating func join(_ roomID: String, at timestampMs: Int64) -> VerifiedEvent {
        sign(roomID, EventType.member, MemberContent(membership: .join, userID: userID, devices: [binding]).jsonObject, at: timestampMs)
    }

    public mutating func invite(_ roomID: String, _ other: TestDevice, at timestampMs: Int64) -> VerifiedEvent {
        sign(
            roomID, EventType.member,
            MemberContent(membership: .invite, userID: other.userID, devices: [DeviceBinding(signingKey: other.publicKey)]).jsonObject,
            at: timestampMs)
    }

    public mutating func membership(_ roomID: String, _ membership: Membership, of user: String, at timestampMs: Int64) -> VerifiedEvent {
        sign(roomID, EventType.member, MemberContent(membership: membership, userID: user).jsonObject, at: timestampMs)
    }

    public mutating func relate(_ roomID: String, _ type: String, to target: String, _ extra: KeyValuePairs<String, JSONValue> = [:], at timestampMs: Int64)
        -> VerifiedEvent
    {
        var content = JSONObject(extra)
        content["target_event_id"] = .string(target)
        return sign(roomID, type, content, at: timestampMs)
    }
}

/// Deterministic shuffling for order-independence tests.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64

    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    public mutating func next() -> UInt64 {
        // SplitMix64.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
