import Crypto
import Foundation
import ParleyArgon2
import ParleyCore
import ParleyStore

/// How a new room is encrypted, when it is.
public enum RoomEncryptionOption: Sendable, Equatable {
    /// Epoch keys sealed to each member device.
    case epochs(history: HistoryVisibility)
    /// One key derived from a 32-byte secret: random (every invite code carries it), or from a passphrase
    /// (``RoomEncryptionOption/preSharedSecret(passphrase:roomID:)``, told to members out of band).
    case preShared(secret: [UInt8], fromPassphrase: Bool)

    /// A random pre-shared secret.
    public static func randomPreSharedSecret() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The pre-shared secret of a passphrase room: Argon2id with the standard parameters, salted with the room id, so
    /// every member derives it from the passphrase alone (docs/PROTOCOL.md §14.6).
    public static func preSharedSecret(passphrase: [UInt8], roomID: String) throws -> [UInt8] {
        guard passphrase.count >= Passphrase.minimumLength else {
            throw ClientError(.invalidArgument, "The passphrase is too short: use at least \(Passphrase.minimumLength) characters.")
        }
        let salt = Array(SHA256.hash(data: Array("parley.psk.salt\n\(roomID)".utf8)).prefix(16))
        return try Argon2idParameters.standard.deriveKey(passphrase: passphrase, salt: salt)
    }
}

extension Node {
    /// The largest canonical `m.room.key` event this node writes; leaves room under the 64 KiB event limit for the
    /// envelope.
    static let keyEventBudget = Event.maxWireBytes - 2048

    /// Turns on encryption in a room this device just created, and for epoch rooms starts the first epoch.
    func enableEncryption(_ roomID: String, _ option: RoomEncryptionOption) throws -> [VerifiedEvent] {
        switch option {
        case .epochs(let history):
            let settings = EncryptionSettings(mode: .epochs, history: history)
            return [try publish(roomID: roomID, type: EventType.encryption, content: settings.jsonObject)]
        case .preShared(let secret, let fromPassphrase):
            let key = RoomKey.preShared(secret: secret, roomID: roomID)
            try store.addRoomKeys([key], roomID: roomID, addedMs: clock())
            try store.setPreSharedSecret(secret, roomID: roomID, fromPassphrase: fromPassphrase)
            // Every holder of the secret reads everything, so history is shared by nature.
            let settings = EncryptionSettings(mode: .preShared, history: .shared, keyID: key.keyID)
            return [try publish(roomID: roomID, type: EventType.encryption, content: settings.jsonObject)]
        }
    }

    /// Takes the key of a pre-shared-key room from an invite's secret or a passphrase; refuses a secret that is not
    /// the room's (checked again by ``checkPreSharedKey(_:)`` once the room's state is known).
    public func addPreSharedSecret(_ secret: [UInt8], roomID: String, fromPassphrase: Bool) throws {
        let key = RoomKey.preShared(secret: secret, roomID: roomID)
        if let settings = try store.roomState(roomID: roomID)?.encryption, settings.keyID != key.keyID {
            throw ClientError(.invalidArgument, "The secret or passphrase is not the key of room \(roomID).")
        }
        try store.addRoomKeys([key], roomID: roomID, addedMs: clock())
        try store.setPreSharedSecret(secret, roomID: roomID, fromPassphrase: fromPassphrase)
    }

    /// The secret of a pre-shared-key room this node holds, and whether it came from a passphrase (then a code says a
    /// passphrase is needed rather than carrying it); `nil` for a room of another kind.
    public func preSharedSecret(_ roomID: String) throws -> (secret: [UInt8], fromPassphrase: Bool)? {
        try store.preSharedSecret(roomID: roomID)
    }

    /// Throws unless this node holds the key a pre-shared-key room names.
    public func checkPreSharedKey(_ roomID: String) throws {
        guard let settings = try store.roomState(roomID: roomID)?.encryption, settings.mode == .preShared, let keyID = settings.keyID else { return }
        guard try store.roomKeys(roomID: roomID)[keyID] != nil else {
            throw ClientError(
                .notAllowed, "The secret or passphrase given is not the key of room \(roomID).",
                remedy: "Check the passphrase, or ask for the invite code again.")
        }
    }

    /// Rewrites `outgoing` for an encrypted room: content that may be sealed is sealed with the current key, and
    /// when the room needs a new epoch (a device left, the key is old or used up, a device joined that may not read
    /// the past) or a joined device lacks keys it may have, the `m.room.key` events come first.
    func sealing(_ outgoing: [OutgoingEvent], roomID: String, state: RoomState, version: Int64?) throws -> (events: [OutgoingEvent], key: RoomKey?) {
        guard let settings = state.encryption, outgoing.contains(where: { RoomCipher.maySeal($0.type) }) else { return (outgoing, nil) }
        let held = try store.roomKeys(roomID: roomID)
        var prefix: [OutgoingEvent] = []
        let key: RoomKey
        switch settings.mode {
        case .preShared:
            guard let keyID = settings.keyID, let shared = held[keyID] else {
                throw ClientError(.notAllowed, "This node does not hold the pre-shared key of \(roomID).", remedy: "Join with the invite code.")
            }
            key = shared
        case .epochs:
            (prefix, key) = try epochKeyEvents(roomID: roomID, state: state, settings: settings, held: held, version: version)
        }
        let sealed = outgoing.map { item -> OutgoingEvent in
            var item = item
            if RoomCipher.maySeal(item.type) { item.sealedWith = key }
            return item
        }
        return (prefix + sealed, key)
    }

    /// Starts a new epoch in an epoch-keyed room if it needs one (after a removal, or when the key is old or used
    /// up); gives joined devices the keys they lack.
    /// - Returns: the `m.room.key` events published.
    @discardableResult
    public func rotateEpoch(_ roomID: String) throws -> [VerifiedEvent] {
        try home.withLock {
            let state = try requireState(roomID)
            guard let settings = state.encryption, settings.mode == .epochs else {
                throw ClientError(.invalidArgument, "Room \(roomID) does not use epoch keys.")
            }
            let (events, _) = try epochKeyEvents(roomID: roomID, state: state, settings: settings, held: try store.roomKeys(roomID: roomID))
            guard !events.isEmpty else { return [] }
            let published = try signAndStore(roomID: roomID, events)
            try catchUpDecryption()
            return published
        }
    }

    /// The key to seal with now, and the `m.room.key` events to publish before sealing with it.
    func epochKeyEvents(
        roomID: String, state: RoomState, settings: EncryptionSettings, held: [String: RoomKey], version: Int64? = nil
    ) throws -> ([OutgoingEvent], RoomKey) {
        let me = identity.signingKeyBase64
        let mine = state.roomKeys.values.filter { held[$0.keyID] != nil && $0.holders.contains(me) }.sorted { $0.introducedAt < $1.introducedAt }
        var events: [OutgoingEvent] = []
        var needsEpoch = true
        if let current = mine.last, let key = held[current.keyID] {
            let aged = clock() - current.introducedAt.timestampMs >= settings.rotationPeriodMs
            let usedUp = try store.sealCount(roomID: roomID, keyID: current.keyID) >= RoomCipher.maxSealsPerKey
            let known = completeEpochs.withLock { $0[roomID] }
            if let version, let known, known.version == version, known.keyID == current.keyID, !aged, !usedUp { return ([], key) }
            let recipients = state.keyRecipients
            let missing = recipients.filter { !current.holders.contains($0.signingKey) }
            let removedSince = state.lastDeviceRemoval.map { $0 > current.introducedAt } ?? false
            needsEpoch = removedSince || aged || usedUp || (!missing.isEmpty && settings.history == .joined)
            if !needsEpoch {
                // With joined history every recipient already holds the current key (else a new epoch starts), and
                // the earlier keys are not theirs to have.
                if settings.history == .shared {
                    events += try keyEvents(for: mine.compactMap { record in held[record.keyID].map { (record, $0) } }, recipients: recipients, roomID: roomID)
                }
                if events.isEmpty, let version { completeEpochs.withLock { $0[roomID] = (version, current.keyID) } }
                return (events, key)
            }
        }
        let recipients = state.keyRecipients
        var generator = SystemRandomNumberGenerator()
        let fresh = RoomKey.random(using: &generator)
        try store.addRoomKeys([fresh], roomID: roomID, addedMs: clock())
        if settings.history == .shared {
            events += try keyEvents(for: mine.compactMap { record in held[record.keyID].map { (record, $0) } }, recipients: recipients, roomID: roomID)
        }
        events += try sealedKeyEvents(fresh, to: recipients, roomID: roomID)
        return (events, fresh)
    }

    /// Events giving each key to the recipients that do not hold it yet.
    func keyEvents(for keys: [(RoomKeyRecord, RoomKey)], recipients: [DeviceBinding], roomID: String) throws -> [OutgoingEvent] {
        try keys.flatMap { record, key in
            try sealedKeyEvents(key, to: recipients.filter { !record.holders.contains($0.signingKey) }, roomID: roomID)
        }
    }

    /// `m.room.key` events sealing `key` to `devices`, as few as the event size limit allows.
    func sealedKeyEvents(_ key: RoomKey, to devices: [DeviceBinding], roomID: String) throws -> [OutgoingEvent] {
        var events: [OutgoingEvent] = []
        var batch: [SealedRoomKey] = []
        var size = 0
        func flush() {
            guard !batch.isEmpty else { return }
            events.append(OutgoingEvent(type: EventType.roomKey, content: RoomKeyContent(keyID: key.keyID, recipients: batch).jsonObject))
            batch = []
            size = 0
        }
        for device in devices {
            guard let exchange = device.exchangeKey.flatMap(Base64.decode) else { continue }
            let sealed = try KeySeal.seal(key, roomID: roomID, senderKey: identity.signingKeyBase64, recipientKey: device.signingKey, exchangeKey: exchange)
            let entry = RoomKeyContent.entryBytes(sealed)
            if size + entry > Node.keyEventBudget { flush() }
            batch.append(sealed)
            size += entry
        }
        flush()
        return events
    }

    /// Opens the room keys sealed to this device and decrypts what they open. Runs after events arrive and before
    /// the timeline or search is read; cheap when there is nothing new.
    @discardableResult
    public func catchUpDecryption() throws -> DecryptionReport {
        try store.catchUpDecryption(receivedMs: clock())
    }
}

/// A direct-message room as `parley dm list` shows it.
public struct DirectMessage: Sendable {
    public var roomID: String
    /// The other user (invited or joined), if any.
    public var peer: String?
    /// The newest message (membership and device changes are not messages), if any.
    public var last: TimelineItem?
    /// The time of the newest message, else of the room's newest timeline item, in Unix milliseconds: what the list is
    /// sorted by.
    public var activeMs: Int64
}

extension Node {
    /// Direct-message rooms have ids with this prefix, so both sides know a room is one without any local record.
    public static let directMessagePrefix = "dm-"

    /// A fresh direct-message room id.
    public static func newDirectMessageRoomID() -> String {
        var generator = SystemRandomNumberGenerator()
        return directMessagePrefix + Hex.encode((0..<8).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    /// The settings of every direct-message room: encrypted with epoch keys, history from each member's join on.
    public static let directMessageEncryption = RoomEncryptionOption.epochs(history: .joined)

    /// Creates a direct-message room with `userID`'s device `key` (when `roomID` is given, the room was just
    /// created elsewhere, in a bucket) and invites them.
    public func startDirectMessage(with userID: String, key: String, roomID: String? = nil) throws -> String {
        try validateUserID(userID)
        guard userID != identity.userID else { throw ClientError(.invalidArgument, "A direct message needs another user.") }
        let key = try checkSigningKey(key, of: .user(userID))
        let room = roomID ?? Node.newDirectMessageRoomID()
        if roomID == nil { _ = try createRoom(room, encryption: Node.directMessageEncryption) }
        try invite(room, userID: userID, key: key)
        return room
    }

    /// The most recently active direct-message room with `userID` (invited or joined) this node holds, if any.
    public func directMessage(with userID: String) throws -> DirectMessage? {
        try validateUserID(userID)
        return try directMessages().first { $0.peer == userID }
    }

    /// How many of a room's newest items are searched for its newest message: device changes come in bursts of a
    /// few, and a room with no message among this many shows none.
    static let lastMessageWindow = 50

    /// Direct-message rooms this node holds, the most recently active first.
    public func directMessages() throws -> [DirectMessage] {
        try catchUpDecryption()
        return try store.roomIDs().filter { $0.hasPrefix(Node.directMessagePrefix) }.map { roomID in
            let state = try store.roomState(roomID: roomID)
            let peer = state?.members.values.filter { $0.userID != identity.userID && ($0.membership == .join || $0.membership == .invite) }
                .map(\.userID).sorted().first
            let recent = try store.timeline(roomID: roomID, limit: Node.lastMessageWindow)
            let last = recent.last { $0.type == EventType.message || $0.type == EventType.encrypted }
            return DirectMessage(roomID: roomID, peer: peer, last: last, activeMs: last?.timestampMs ?? recent.last?.timestampMs ?? 0)
        }.sorted { $0.activeMs > $1.activeMs }
    }
}
