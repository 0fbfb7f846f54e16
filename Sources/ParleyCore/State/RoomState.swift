/// A user's standing in a room and the devices bound to them.
public struct RoomMember: Sendable, Equatable {
    public var userID: String
    public var membership: Membership
    /// Devices that joined, by signing key: only these may send events as this user.
    public var devices: [String: DeviceBinding] = [:]
    /// Device keys an invite allows to join, by signing key.
    public var invitedDevices: [String: DeviceBinding] = [:]

    public init(userID: String, membership: Membership) {
        self.userID = userID
        self.membership = membership
    }
}

/// Who created the room, from its `m.room.create` event.
public struct RoomCreation: Sendable, Equatable {
    public var creatorID: String
    public var creatorKey: String
    public var eventID: String
    public var hash: String
    public var timestampMs: Int64
}

/// What the room's state knows of one room key: who introduced it, when, and which devices were given it.
public struct RoomKeyRecord: Sendable, Equatable {
    public var keyID: String
    /// The first `m.room.key` naming the key, in the total order: the start of its epoch.
    public var introducedAt: EventOrder
    public var introducedBy: String
    /// Signing keys of the devices that hold the key: its introducer and every recipient so far.
    public var holders: Set<String>
}

/// What an event refers to, as far as authorization needs it.
public struct RelationTarget: Sendable, Hashable {
    public var type: String
    public var senderID: String
    /// The device that signed it: whether it is really `senderID`'s (a key that user joined with) is the room
    /// state's to say, since anyone can sign an event claiming any sender.
    public var senderKey: String

    public init(type: String, senderID: String, senderKey: String) {
        self.type = type
        self.senderID = senderID
        self.senderKey = senderKey
    }

    public init(_ event: Event) {
        self.init(type: event.type, senderID: event.senderID, senderKey: event.senderKey)
    }

    /// Whether a redaction may hide an event of this type: not state or key events, and not redactions (§8.5).
    public var isRedactable: Bool { !EventType.isReplayed(type) && type != EventType.redaction }
}

/// Which of the events sharing the id an accepted redaction names it hides (docs/PROTOCOL.md §8.5).
public enum RedactionScope: Sendable, Hashable {
    /// The sender's own events among them: those signed by these devices of the sender. A member's redaction hides
    /// only their own events, even when another event carries the same id.
    case own(Set<String>)
    /// A moderator's redaction, when the sender has none of its own among them: every redactable one.
    case all

    public func covers(_ target: RelationTarget) -> Bool {
        guard target.isRedactable else { return false }
        switch self {
        case .own(let keys): return keys.contains(target.senderKey)
        case .all: return true
        }
    }

    /// The form a store keeps it in: `*`, or the devices' keys sorted and joined by spaces.
    public var text: String {
        switch self {
        case .all: "*"
        case .own(let keys): keys.sorted().joined(separator: " ")
        }
    }

    public init?(text: String?) {
        guard let text, !text.isEmpty else { return nil }
        self = text == "*" ? .all : .own(Set(text.split(separator: " ").map(String.init)))
    }
}

/// Answers the question authorizing an edit, redaction, reaction or receipt needs about the event it refers to.
///
/// Only the targets' types and senders matter: both are in the envelope, so the verdict is the same whether or not
/// their content is held (stripped by a redaction, or not fetched yet).
public protocol RelationLookup {
    /// Every chained event with this id, whatever its authorization. Event ids are names, not identities: events of
    /// several devices may share one (docs/PROTOCOL.md §6.5), and a relation naming it has them all as candidates.
    func targets(_ eventID: String) -> [RelationTarget]
    /// What an accepted redaction hides, as decided when it was judged (``RoomState/redactionScope(of:candidates:)``).
    func redactionScope(of redaction: Event) -> RedactionScope?
}

/// The outcome of authorizing one chained event against the room state before it.
public enum Authorization: Sendable, Equatable {
    case accepted
    /// Validly signed and chained, but not allowed: kept as evidence, never shown, never applied.
    case rejected(String)
    /// Refers to an event not held yet; judged again when it arrives.
    case awaitingTarget(String)
}

/// The resolved state of one room (docs/PROTOCOL.md §8): creation, members and their devices, power levels,
/// name and topic. Replaying the same set of events in authorization order always gives the same state.
public struct RoomState: Sendable, Equatable {
    public let roomID: String
    public private(set) var creation: RoomCreation?
    public private(set) var members: [String: RoomMember] = [:]
    /// Which user each signing key was ever bound to: a key belongs to one user for the room's life.
    public private(set) var keyOwners: [String: String] = [:]
    public private(set) var powerLevels = PowerLevels(users: [:])
    public private(set) var name: String?
    public private(set) var topic: String?
    /// The hash of the one `m.room.create` this node accepts for the room, when it knows it (from an invite, or
    /// because it created or first stored the room): any other create is refused, however early it claims to be.
    public private(set) var pinnedCreateHash: String?
    /// How the room's content is encrypted, once an `m.room.encryption` event set it.
    public private(set) var encryption: EncryptionSettings?
    /// Room keys introduced by `m.room.key` events, by key id.
    public private(set) var roomKeys: [String: RoomKeyRecord] = [:]
    /// The newest accepted event that took devices out of the room (a leave, kick or ban): an epoch introduced
    /// before it may be known to a device that is gone.
    public private(set) var lastDeviceRemoval: EventOrder?
    /// For each member's devices (joined or invited), by user and signing key, the member event that made it one of
    /// theirs: what it may read of sealed history starts there when history is `joined` (docs/PROTOCOL.md §14.10).
    /// By user as well as key: an invite may name a key another user was invited with (§8.4.4).
    public private(set) var deviceSince: [String: [String: EventOrder]] = [:]

    public init(roomID: String, pinnedCreateHash: String? = nil) {
        self.roomID = roomID
        self.pinnedCreateHash = pinnedCreateHash
    }

    /// Pins the create this state was founded by, so no other create is ever accepted for the room.
    public mutating func pinCreate() {
        if pinnedCreateHash == nil { pinnedCreateHash = creation?.hash }
    }

    public func membership(of user: String) -> Membership? { members[user]?.membership }

    /// Whether `user` is joined and `key` is one of their joined devices.
    public func isJoinedDevice(user: String, key: String) -> Bool {
        guard let member = members[user], member.membership == .join else { return false }
        return member.devices[key] != nil
    }

    public var joinedMembers: [RoomMember] {
        members.values.filter { $0.membership == .join }.sorted { $0.userID < $1.userID }
    }

    /// Authorizes `event` against this state and, when it is an accepted state event, applies it.
    ///
    /// - Parameters:
    ///   - content: the parsed content; `nil` when the event arrived stripped of its content.
    ///   - relations: lookups for edits, redactions, reactions and receipts.
    public mutating func authorize(
        _ event: VerifiedEvent, content: EventContent?, relations: some RelationLookup
    ) -> Authorization {
        let envelope = event.event
        guard envelope.roomID == roomID else { return .rejected("event belongs to room \(envelope.roomID), not \(roomID)") }
        if envelope.type == EventType.create { return applyCreate(event) }
        guard let creation else { return .rejected("the room has no m.room.create before this event") }
        guard envelope.timestampMs >= creation.timestampMs else {
            return .rejected("event is older than the room's m.room.create")
        }
        guard let content else {
            if EventType.isReplayed(envelope.type) { return .rejected("a \(envelope.type) event must carry its content") }
            return senderProblem(envelope).map(Authorization.rejected) ?? .accepted
        }
        if case .member(let member) = content {
            let verdict = applyMember(member, event: envelope)
            if verdict == .accepted, member.membership == .leave || member.membership == .ban { lastDeviceRemoval = EventOrder(envelope) }
            return verdict
        }
        if content.relationTarget == envelope.eventID { return .rejected("an event cannot refer to itself") }
        if let problem = senderProblem(envelope) { return .rejected(problem) }
        let level = powerLevels.level(of: envelope.senderID)
        let required = powerLevels.required(for: envelope.type)
        guard level >= required else {
            return .rejected("sending \(envelope.type) needs power level \(required); \(envelope.senderID) has \(level)")
        }
        switch content {
        case .message, .edit, .reaction:
            if encryption != nil { return .rejected("the room is encrypted: \(envelope.type) must be sent sealed, as m.room.encrypted") }
        default: break
        }
        switch content {
        case .powerLevels(let proposed):
            if let problem = powerLevels.problemReplacing(with: proposed, by: envelope.senderID) { return .rejected(problem) }
            powerLevels = proposed
        case .name(let newName):
            name = newName.isEmpty ? nil : newName
        case .topic(let newTopic):
            topic = newTopic.isEmpty ? nil : newTopic
        case .encryption(let settings):
            guard encryption == nil else { return .rejected("the room's encryption was already set; it never changes") }
            encryption = settings
        case .encrypted(let sealed):
            if let problem = sealingProblem(sealed, event: envelope) { return .rejected(problem) }
        case .roomKey(let keys):
            if let problem = applyRoomKey(keys, event: envelope) { return .rejected(problem) }
        case .keyRequest:
            guard encryption?.mode == .epochs else { return .rejected("the room does not use epoch keys; m.room.key_request is refused") }
        case .keyForward(let forward):
            guard encryption?.mode == .epochs else { return .rejected("the room does not use epoch keys; m.room.key_forward is refused") }
            guard isMemberDevice(forward.recipient) else {
                return .rejected("device \(forward.recipient.prefix(12))… is not a joined or invited device of the room")
            }
        case .edit(let targetID, _):
            // A relation whose target id several events share is accepted when its rules hold for any of them
            // (§8.5): an event copying another's id can never make a genuine relation be refused.
            let candidates = sortedTargets(targetID, relations)
            guard let first = candidates.first else { return .awaitingTarget(targetID) }
            guard candidates.contains(where: { $0.type == EventType.message && $0.senderID == envelope.senderID }) else {
                guard let message = candidates.first(where: { $0.type == EventType.message }) else {
                    return .rejected("only m.room.message events can be edited, not \(first.type)")
                }
                return .rejected("only the original sender \(message.senderID) can edit \(targetID)")
            }
        case .redaction(let targetID, _):
            let candidates = sortedTargets(targetID, relations)
            guard let first = candidates.first else { return .awaitingTarget(targetID) }
            let redactable = candidates.filter(\.isRedactable)
            guard !redactable.isEmpty else {
                guard first.type == EventType.redaction else { return .rejected("state and key events cannot be redacted (\(first.type))") }
                return .rejected("a redaction cannot be redacted")
            }
            if redactionScope(of: envelope, candidates: candidates) == .all && level < powerLevels.redact {
                return .rejected(
                    "redacting another user's event needs power level \(powerLevels.redact); \(envelope.senderID) has \(level)")
            }
        case .reaction(let targetID, _):
            // A second reaction with the same key is not refused here: whether the first is still in force depends
            // on redactions, whose targets may have lost their content. The timeline counts each user once per key.
            let candidates = sortedTargets(targetID, relations)
            guard let first = candidates.first else { return .awaitingTarget(targetID) }
            guard candidates.contains(where: { $0.type == EventType.message }) else {
                return .rejected("only m.room.message events take reactions, not \(first.type)")
            }
        case .receipt(_, let targetID, _):
            guard !relations.targets(targetID).isEmpty else { return .awaitingTarget(targetID) }
        case .create, .member, .message, .other:
            break
        }
        return .accepted
    }

    /// What a redaction `redaction` would hide among `candidates` (the events carrying the id it names), judged
    /// against this state: the redactable candidates signed by a device its sender joined with, if there are any;
    /// else, as a moderator's, all of them. A device is the sender's only by the room's key bindings (§8.4.4): an event
    /// claiming the sender's user id from another device is no event of theirs.
    public func redactionScope(of redaction: Event, candidates: [RelationTarget]) -> RedactionScope {
        redactionScope(sender: redaction.senderID, candidates: candidates)
    }

    /// ``redactionScope(of:candidates:)`` for a redaction `sender` would send now.
    public func redactionScope(sender: String, candidates: [RelationTarget]) -> RedactionScope {
        let own = candidates.filter { $0.isRedactable && $0.senderID == sender && keyOwners[$0.senderKey] == sender }
        return own.isEmpty ? .all : .own(Set(own.map(\.senderKey)))
    }

    /// A relation's candidates in a fixed order, so that a rejection's reason does not depend on arrival order.
    func sortedTargets(_ eventID: String, _ relations: some RelationLookup) -> [RelationTarget] {
        let found = relations.targets(eventID)
        guard found.count > 1 else { return found }
        return found.sorted { ($0.senderID, $0.type, $0.senderKey) < ($1.senderID, $1.type, $1.senderKey) }
    }

    /// Why `event`'s sealed content may not be accepted, or `nil`.
    func sealingProblem(_ sealed: EncryptedContent, event: Event) -> String? {
        guard let encryption else { return "the room is not encrypted; m.room.encrypted is refused" }
        switch encryption.mode {
        case .preShared:
            guard sealed.keyID == encryption.keyID else { return "sealed under key \(sealed.keyID.prefix(16))…, not the room's pre-shared key" }
        case .epochs:
            guard roomKeys[sealed.keyID]?.holders.contains(event.senderKey) == true else {
                return "sealed under key \(sealed.keyID.prefix(16))…, which this device had not been given before this event"
            }
        }
        return nil
    }

    /// Records the devices an `m.room.key` event gives a key to, or says why it may not.
    mutating func applyRoomKey(_ keys: RoomKeyContent, event: Event) -> String? {
        guard encryption?.mode == .epochs else { return "the room does not use epoch keys; m.room.key is refused" }
        for recipient in keys.recipients where !isMemberDevice(recipient.signingKey) {
            return "device \(recipient.signingKey.prefix(12))… is not a joined or invited device of the room"
        }
        if var record = roomKeys[keys.keyID] {
            guard record.holders.contains(event.senderKey) else {
                return "key \(keys.keyID.prefix(16))… was never given to this device, so it cannot share it"
            }
            record.holders.formUnion(keys.recipients.map(\.signingKey))
            roomKeys[keys.keyID] = record
        } else {
            roomKeys[keys.keyID] = RoomKeyRecord(
                keyID: keys.keyID, introducedAt: EventOrder(event), introducedBy: event.senderKey,
                holders: Set(keys.recipients.map(\.signingKey)).union([event.senderKey]))
        }
        return nil
    }

    /// Whether `signingKey` is a device of a joined member, or a device an invite names.
    public func isMemberDevice(_ signingKey: String) -> Bool {
        members.values.contains { member in
            switch member.membership {
            case .join: member.devices[signingKey] != nil || member.invitedDevices[signingKey] != nil
            case .invite: member.invitedDevices[signingKey] != nil
            case .leave, .ban: false
            }
        }
    }

    /// Every device a room key should reach now: joined devices, and invited devices whose exchange key is known,
    /// each once. A joined device is sealed to with the exchange key it joined with; a key invited for several users
    /// and joined by none gets nothing until it joins, since nobody can tell which exchange key is its own (§8.4.4).
    public var keyRecipients: [DeviceBinding] {
        var joined: [String: DeviceBinding] = [:]
        var invited: [String: [DeviceBinding]] = [:]
        for member in members.values {
            switch member.membership {
            case .join:
                for device in member.devices.values { joined[device.signingKey] = device }
                for device in member.invitedDevices.values where device.exchangeKey != nil { invited[device.signingKey, default: []].append(device) }
            case .invite:
                for device in member.invitedDevices.values where device.exchangeKey != nil { invited[device.signingKey, default: []].append(device) }
            case .leave, .ban:
                break
            }
        }
        for (key, bindings) in invited where joined[key] == nil && keyOwners[key] == nil && bindings.count == 1 { joined[key] = bindings[0] }
        return joined.values.sorted { $0.signingKey < $1.signingKey }
    }

    /// Why the sender of `event` may not send anything, or `nil`.
    func senderProblem(_ event: Event) -> String? {
        guard let member = members[event.senderID] else { return "sender \(event.senderID) is not a member of the room" }
        switch member.membership {
        case .join:
            if member.devices[event.senderKey] == nil {
                return "device key \(event.senderKey.prefix(12))… is not bound to \(event.senderID) in this room"
            }
            return nil
        case .ban: return "sender \(event.senderID) is banned from the room"
        case .invite: return "sender \(event.senderID) is invited but has not joined"
        case .leave: return "sender \(event.senderID) has left the room"
        }
    }

    mutating func applyCreate(_ event: VerifiedEvent) -> Authorization {
        let envelope = event.event
        if let creation { return .rejected("the room was already created by \(creation.eventID)") }
        if let pinnedCreateHash, pinnedCreateHash != event.hash {
            return .rejected("another m.room.create founded this room (\(pinnedCreateHash.prefix(16))…); this one is refused")
        }
        guard envelope.seq == 1 else { return .rejected("m.room.create must be the first event of its device in the room (seq 1)") }
        creation = RoomCreation(
            creatorID: envelope.senderID, creatorKey: envelope.senderKey, eventID: envelope.eventID, hash: event.hash,
            timestampMs: envelope.timestampMs)
        powerLevels = PowerLevels.initial(creator: envelope.senderID)
        return .accepted
    }

    mutating func applyMember(_ content: MemberContent, event: Event) -> Authorization {
        let sender = event.senderID
        let target = content.userID
        let senderLevel = powerLevels.level(of: sender)
        let targetLevel = powerLevels.level(of: target)
        var record = members[target] ?? RoomMember(userID: target, membership: .leave)
        let isNew = members[target] == nil
        let devicesBefore = Set(record.devices.keys).union(record.invitedDevices.keys)

        switch content.membership {
        case .invite:
            if let problem = senderProblem(event) { return .rejected(problem) }
            guard senderLevel >= powerLevels.invite else {
                return .rejected("inviting needs power level \(powerLevels.invite); \(sender) has \(senderLevel)")
            }
            guard record.membership != .ban else { return .rejected("\(target) is banned; unban them first") }
            if let problem = keyOwnerProblem(content.devices, user: target) { return .rejected(problem) }
            if record.membership != .join { record.membership = .invite }
            for device in content.devices { record.invitedDevices[device.signingKey] = device }

        case .join:
            guard sender == target else { return .rejected("a join must be sent by the joining user, not \(sender)") }
            let device = content.devices[0]
            guard device.signingKey == event.senderKey else {
                return .rejected("a join must bind the device that signs it")
            }
            guard record.membership != .ban else { return .rejected("\(target) is banned from the room") }
            // The creator's first join needs no invite; after leaving or being kicked, the creator needs one too.
            let isCreatorDevice = isNew && creation?.creatorID == sender && creation?.creatorKey == event.senderKey
            guard record.invitedDevices[device.signingKey] != nil || isCreatorDevice else {
                return .rejected("\(target) was not invited with device key \(device.signingKey.prefix(12))…")
            }
            if let problem = keyOwnerProblem(content.devices, user: target) { return .rejected(problem) }
            record.membership = .join
            record.devices[device.signingKey] = device
            record.invitedDevices[device.signingKey] = nil
            keyOwners[device.signingKey] = target

        case .leave where !content.devices.isEmpty:
            // One device's removal: by the user themselves (from one of their joined devices), or a kick of the
            // device by someone who could kick the user.
            if sender == target {
                guard record.membership == .join, record.devices[event.senderKey] != nil else {
                    return .rejected("\(target) can remove devices only from a joined device of their own")
                }
            } else {
                if let problem = senderProblem(event) { return .rejected(problem) }
                guard senderLevel >= powerLevels.kick, senderLevel > targetLevel else {
                    return .rejected(
                        "removing a device of \(target) (level \(targetLevel)) needs power level \(powerLevels.kick) and above theirs; \(sender) has \(senderLevel)"
                    )
                }
            }
            for device in content.devices {
                guard record.devices[device.signingKey] != nil || record.invitedDevices[device.signingKey] != nil else {
                    return .rejected("device \(device.signingKey.prefix(12))… is not a device of \(target) in this room")
                }
            }
            for device in content.devices {
                record.devices[device.signingKey] = nil
                record.invitedDevices[device.signingKey] = nil
            }
            if record.devices.isEmpty { record.membership = record.invitedDevices.isEmpty ? .leave : .invite }

        case .leave where sender == target:
            let holdsKey = record.devices[event.senderKey] != nil || record.invitedDevices[event.senderKey] != nil
            guard !isNew, record.membership == .join || record.membership == .invite, holdsKey else {
                return .rejected("\(target) cannot leave: not joined or invited with this device")
            }
            record.membership = .leave
            record.devices = [:]
            record.invitedDevices = [:]

        case .leave:
            if let problem = senderProblem(event) { return .rejected(problem) }
            switch record.membership {
            case .ban:
                guard senderLevel >= powerLevels.ban else {
                    return .rejected("unbanning needs power level \(powerLevels.ban); \(sender) has \(senderLevel)")
                }
            case .join, .invite:
                guard !isNew else { return .rejected("\(target) is not a member of the room") }
                guard senderLevel >= powerLevels.kick, senderLevel > targetLevel else {
                    return .rejected(
                        "kicking \(target) (level \(targetLevel)) needs power level \(powerLevels.kick) and above theirs; \(sender) has \(senderLevel)")
                }
            case .leave:
                return .rejected("\(target) is not a member of the room")
            }
            record.membership = .leave
            record.devices = [:]
            record.invitedDevices = [:]

        case .ban:
            if let problem = senderProblem(event) { return .rejected(problem) }
            guard senderLevel >= powerLevels.ban, senderLevel > targetLevel else {
                return .rejected(
                    "banning \(target) (level \(targetLevel)) needs power level \(powerLevels.ban) and above theirs; \(sender) has \(senderLevel)")
            }
            record.membership = .ban
            record.devices = [:]
            record.invitedDevices = [:]
        }
        members[target] = record
        let devicesAfter = Set(record.devices.keys).union(record.invitedDevices.keys)
        var since = deviceSince[target] ?? [:]
        for key in devicesBefore.subtracting(devicesAfter) { since[key] = nil }
        for key in devicesAfter where since[key] == nil { since[key] = EventOrder(event) }
        deviceSince[target] = since.isEmpty ? nil : since
        return .accepted
    }

    /// Whether the joined device `signingKey` may read sealed event `event` under the room's history rule: every
    /// sealed event with `history: shared`; with `joined`, those after the member event that made it a device of the
    /// user who joined with it. `false` for a device that is not joined.
    public func mayRead(_ event: EventOrder, device signingKey: String) -> Bool {
        guard let owner = keyOwners[signingKey], isJoinedDevice(user: owner, key: signingKey), let since = deviceSince[owner]?[signingKey] else {
            return false
        }
        return encryption?.history == .shared || since < event
    }

    /// Every joined device of the room, with the exchange key it joined with: the only devices keys are forwarded to
    /// (§14.10). A joined key belongs to one user (§8.4.4), so each appears once.
    public var joinedDevices: [DeviceBinding] {
        joinedMembers.flatMap { $0.devices.values.sorted { $0.signingKey < $1.signingKey } }
    }

    func keyOwnerProblem(_ devices: [DeviceBinding], user: String) -> String? {
        for device in devices {
            if let owner = keyOwners[device.signingKey], owner != user {
                return "device key \(device.signingKey.prefix(12))… is already bound to \(owner)"
            }
        }
        return nil
    }
}
