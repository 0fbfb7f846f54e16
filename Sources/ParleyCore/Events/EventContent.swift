/// Names of the event types this version of the protocol gives meaning to.
public enum EventType {
    public static let create = "m.room.create"
    public static let member = "m.room.member"
    public static let powerLevels = "m.room.power_levels"
    public static let name = "m.room.name"
    public static let topic = "m.room.topic"
    public static let message = "m.room.message"
    public static let edit = "m.room.edit"
    public static let redaction = "m.room.redaction"
    public static let reaction = "m.room.reaction"
    public static let receipt = "m.receipt"
    public static let encryption = "m.room.encryption"
    public static let encrypted = "m.room.encrypted"
    public static let roomKey = "m.room.key"
    public static let keyRequest = "m.room.key_request"
    public static let keyForward = "m.room.key_forward"

    /// Types that change room state; they are authorized by state rules and can never be redacted.
    public static let stateTypes: Set<String> = [create, member, powerLevels, name, topic, encryption]

    /// Whether `type` is one of ``stateTypes``. Asked several times for every event stored, so it compares rather
    /// than hashes, and only with the state types of the same length: none is as long as `m.room.message`.
    public static func isState(_ type: String) -> Bool {
        switch type.utf8.count {
        case 11: type == name
        case 12: type == topic
        case 13: type == create || type == member
        case 17: type == encryption
        case 19: type == powerLevels
        default: false
        }
    }

    /// Types room state is resolved from: the state types, and `m.room.key`, whose recipients decide which devices
    /// hold a key. None can be redacted; `m.room.key` needs only the power to send events.
    public static let replayedTypes: Set<String> = stateTypes.union([roomKey])

    /// Whether `type` is one of ``replayedTypes``.
    public static func isReplayed(_ type: String) -> Bool { isState(type) || type.utf8.count == 10 && type == roomKey }
}

/// Membership of a user in a room.
public enum Membership: String, Sendable, Equatable, CaseIterable {
    case invite, join, leave, ban
}

/// A device as a member event binds it: its Ed25519 signing key and, optionally, its X25519 key (base64).
public struct DeviceBinding: Sendable, Equatable, Hashable {
    public var signingKey: String
    public var exchangeKey: String?

    public init(signingKey: String, exchangeKey: String? = nil) {
        self.signingKey = signingKey
        self.exchangeKey = exchangeKey
    }

    var jsonValue: JSONValue {
        var object = JSONObject()
        object["signing_key"] = .string(signingKey)
        if let exchangeKey { object["exchange_key"] = .string(exchangeKey) }
        return .object(object)
    }
}

/// Message kinds of `m.room.message` (`msgtype`).
public enum MessageKind: String, Sendable, Equatable, CaseIterable {
    /// `file` shares a file (its `file` object, §16.4); the body is its caption, or its name.
    case text, notice, emote, file
}

/// Receipt kinds of `m.receipt`.
public enum ReceiptKind: String, Sendable, Equatable, CaseIterable {
    case delivered, read
}

/// The typed content of an event of a known type (docs/PROTOCOL.md §7).
public enum EventContent: Sendable, Equatable {
    case create(version: Int64)
    case member(MemberContent)
    case powerLevels(PowerLevels)
    case name(String)
    case topic(String)
    /// A message; `file` is present exactly when `kind` is `.file`, `forwarded` when it forwards another message.
    case message(
        kind: MessageKind, body: String, file: FileAttachment? = nil, priority: MessagePriority = .normal, forwarded: ForwardReference? = nil)
    case edit(target: String, body: String)
    case redaction(target: String, reason: String?)
    case reaction(target: String, key: String)
    /// A receipt: this device received or read the room up to `upTo`, and holds (`delivered`) or has shown (`read`)
    /// each of `heads` with everything before it in its chain (§7.10).
    case receipt(kind: ReceiptKind, upTo: String, heads: [ReceiptHead] = [])
    case encryption(EncryptionSettings)
    case encrypted(EncryptedContent)
    case roomKey(RoomKeyContent)
    case keyRequest(KeyRequestContent)
    case keyForward(KeyForwardContent)
    /// A type this version does not interpret; kept and relayed, never shown.
    case other

    /// The event this one refers to (edit, redaction, reaction, receipt), if any.
    public var relationTarget: String? {
        switch self {
        case .edit(let target, _), .redaction(let target, _), .reaction(let target, _): target
        case .receipt(_, let upTo, _): upTo
        default: nil
        }
    }
}

public struct MemberContent: Sendable, Equatable {
    public var membership: Membership
    public var userID: String
    public var devices: [DeviceBinding]
    public var reason: String?

    public init(membership: Membership, userID: String, devices: [DeviceBinding] = [], reason: String? = nil) {
        self.membership = membership
        self.userID = userID
        self.devices = devices
        self.reason = reason
    }

    public var jsonObject: JSONObject {
        var object = JSONObject()
        object["membership"] = .string(membership.rawValue)
        object["user_id"] = .string(userID)
        if !devices.isEmpty { object["devices"] = .array(devices.map(\.jsonValue)) }
        if let reason { object["reason"] = .string(reason) }
        return object
    }
}

/// A content rule an event breaks.
public struct ContentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension EventContent {
    /// The longest room name and topic, in UTF-8 bytes.
    public static let maxNameBytes = 255
    public static let maxTopicBytes = 4096
    /// The longest reaction key, in UTF-8 bytes (a few emoji with modifiers).
    public static let maxReactionKeyBytes = 64
    public static let maxReasonBytes = 1024

    /// Parses and validates the content of an event of type `type` in room `roomID`.
    /// - Throws: ``ContentError`` naming the field and rule.
    public static func parse(type: String, content: JSONObject, roomID: String) throws(ContentError) -> EventContent {
        var reader = ContentReader(content: content, type: type)
        let result: EventContent
        switch type {
        case EventType.create:
            let version = try reader.integer("version")
            guard version == 1 else { throw ContentError("m.room.create: unsupported room version \(version)") }
            result = .create(version: version)
        case EventType.member:
            result = .member(try parseMember(&reader))
        case EventType.powerLevels:
            result = .powerLevels(try PowerLevels(content: content))
            return result
        case EventType.name:
            result = .name(try reader.string("name", maxBytes: maxNameBytes, allowEmpty: true))
        case EventType.topic:
            result = .topic(try reader.string("topic", maxBytes: maxTopicBytes, allowEmpty: true))
        case EventType.message:
            let kind = try reader.enumeration("msgtype", MessageKind.self)
            let body = try reader.string("body")
            let file = try reader.optionalValue("file").map { value throws(ContentError) in try FileAttachment.parse(value) }
            guard (kind == .file) == (file != nil) else {
                throw ContentError(kind == .file ? "m.room.message: msgtype file needs a file object" : "m.room.message: only msgtype file has a file object")
            }
            let priority = try MessagePriority.parse(&reader)
            let forwarded = try reader.optionalValue("forwarded").map { value throws(ContentError) in try ForwardReference.parse(value) }
            result = .message(kind: kind, body: body, file: file, priority: priority, forwarded: forwarded)
        case EventType.edit:
            let target = try reader.eventID("target_event_id", roomID: roomID)
            result = .edit(target: target, body: try reader.string("body"))
        case EventType.redaction:
            let target = try reader.eventID("target_event_id", roomID: roomID)
            result = .redaction(target: target, reason: try reader.optionalString("reason", maxBytes: maxReasonBytes))
        case EventType.reaction:
            let target = try reader.eventID("target_event_id", roomID: roomID)
            result = .reaction(target: target, key: try reader.string("key", maxBytes: maxReactionKeyBytes))
        case EventType.receipt:
            let kind = try reader.enumeration("receipt_type", ReceiptKind.self)
            result = .receipt(kind: kind, upTo: try reader.eventID("event_id", roomID: roomID), heads: try ReceiptHead.parseList(&reader))
        case EventType.encryption:
            result = .encryption(try parseEncryption(&reader))
        case EventType.encrypted:
            result = .encrypted(try parseEncrypted(&reader))
        case EventType.roomKey:
            result = .roomKey(try parseRoomKey(&reader))
        case EventType.keyRequest:
            result = .keyRequest(try KeyRequestContent.parse(&reader))
        case EventType.keyForward:
            result = .keyForward(try KeyForwardContent.parse(&reader))
        default:
            return .other
        }
        try reader.rejectUnread()
        return result
    }

    static func parseMember(_ reader: inout ContentReader) throws(ContentError) -> MemberContent {
        let membership = try reader.enumeration("membership", Membership.self)
        let userID = try reader.string("user_id")
        if let problem = Identifier.problem(with: userID, kind: .user) { throw ContentError("m.room.member: \(problem)") }
        let reason = try reader.optionalString("reason", maxBytes: maxReasonBytes)
        var devices: [DeviceBinding] = []
        if let list = try reader.optionalArray("devices") {
            guard membership != .ban else {
                throw ContentError("m.room.member: devices are only listed in invite, join and a device's removal (leave)")
            }
            guard !list.isEmpty, list.count <= 16 else { throw ContentError("m.room.member: devices must list 1 to 16 devices") }
            for entry in list {
                guard case .object(let object) = entry else { throw ContentError("m.room.member: each device must be an object") }
                var deviceReader = ContentReader(content: object, type: "m.room.member device")
                let signingKey = try deviceReader.string("signing_key")
                guard let keyBytes = Base64.decode(signingKey) else {
                    throw ContentError("m.room.member: signing_key is not padded base64")
                }
                do { try StrictEd25519.checkPublicKey(keyBytes) } catch {
                    throw ContentError("m.room.member: weak signing key refused: \(error)")
                }
                let exchangeKey = try deviceReader.optionalString("exchange_key", maxBytes: 64)
                if exchangeKey != nil, membership == .leave {
                    throw ContentError("m.room.member: a device's removal names only its signing_key")
                }
                if let exchangeKey {
                    guard let exchangeBytes = Base64.decode(exchangeKey) else {
                        throw ContentError("m.room.member: exchange_key is not padded base64")
                    }
                    do { try X25519KeyCheck.check(exchangeBytes) } catch {
                        throw ContentError("m.room.member: weak exchange key refused: \(error)")
                    }
                }
                try deviceReader.rejectUnread()
                let binding = DeviceBinding(signingKey: signingKey, exchangeKey: exchangeKey)
                guard !devices.contains(where: { $0.signingKey == signingKey }) else {
                    throw ContentError("m.room.member: a device is listed twice")
                }
                devices.append(binding)
            }
        }
        if membership == .invite && devices.isEmpty { throw ContentError("m.room.member: an invite must list the invited device keys") }
        if membership == .join {
            guard devices.count == 1, devices[0].exchangeKey != nil else {
                throw ContentError("m.room.member: a join lists exactly the joining device, with its exchange_key")
            }
        }
        return MemberContent(membership: membership, userID: userID, devices: devices, reason: reason)
    }
}

/// Reads typed fields of a content object and remembers which it read, to refuse unknown ones.
struct ContentReader {
    let content: JSONObject
    let type: String
    /// Field names read so far; a handful at most, so a list beats hashing.
    var read: [String] = []

    init(content: JSONObject, type: String) {
        self.content = content
        self.type = type
        read.reserveCapacity(8)
    }

    mutating func value(_ name: String) throws(ContentError) -> JSONValue {
        read.append(name)
        guard let value = content[name] else { throw ContentError("\(type): missing field \"\(name)\"") }
        return value
    }

    mutating func string(_ name: String, maxBytes: Int = Event.maxWireBytes, allowEmpty: Bool = false) throws(ContentError) -> String {
        let value = try value(name)
        guard case .string(let text) = value else {
            throw ContentError("\(type): field \"\(name)\" must be a string, found \(value.kindName)")
        }
        guard allowEmpty || !text.isEmpty else { throw ContentError("\(type): field \"\(name)\" is empty") }
        guard text.utf8.count <= maxBytes else {
            throw ContentError("\(type): field \"\(name)\" is longer than \(maxBytes) bytes")
        }
        return text
    }

    mutating func optionalString(_ name: String, maxBytes: Int) throws(ContentError) -> String? {
        guard content[name] != nil else {
            read.append(name)
            return nil
        }
        return try string(name, maxBytes: maxBytes, allowEmpty: true)
    }

    mutating func integer(_ name: String) throws(ContentError) -> Int64 {
        let value = try value(name)
        guard case .integer(let number) = value else {
            throw ContentError("\(type): field \"\(name)\" must be an integer, found \(value.kindName)")
        }
        return number
    }

    mutating func optionalValue(_ name: String) -> JSONValue? {
        read.append(name)
        return content[name]
    }

    mutating func optionalInteger(_ name: String) throws(ContentError) -> Int64? {
        guard content[name] != nil else {
            read.append(name)
            return nil
        }
        return try integer(name)
    }

    mutating func optionalArray(_ name: String) throws(ContentError) -> [JSONValue]? {
        read.append(name)
        guard let value = content[name] else { return nil }
        guard case .array(let elements) = value else {
            throw ContentError("\(type): field \"\(name)\" must be an array, found \(value.kindName)")
        }
        return elements
    }

    mutating func enumeration<E: RawRepresentable & CaseIterable>(_ name: String, _: E.Type) throws(ContentError) -> E
    where E.RawValue == String {
        let text = try string(name)
        guard let result = E(rawValue: text) else {
            let allowed = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw ContentError("\(type): field \"\(name)\" is \"\(Identifier.printable(text))\"; expected one of \(allowed)")
        }
        return result
    }

    mutating func eventID(_ name: String, roomID: String) throws(ContentError) -> String {
        let text = try string(name)
        if let problem = EventID.problem(with: text, roomID: roomID) { throw ContentError("\(type): \(name): \(problem)") }
        return text
    }

    func rejectUnread() throws(ContentError) {
        for member in content.members where !read.contains(member.key) {
            throw ContentError("\(type): unknown field \"\(Identifier.printable(member.key))\"")
        }
    }
}
