/// How urgently a message should travel (docs/PROTOCOL.md §7.6): under backpressure a transport sends the more
/// urgent first. `normal` is written by leaving the field out, so each priority has one form on the wire.
public enum MessagePriority: String, Sendable, Equatable, Hashable, CaseIterable, Comparable {
    case low, normal, high, urgent

    /// The order transports honour: `low` < `normal` < `high` < `urgent`.
    public var rank: Int {
        switch self {
        case .low: 0
        case .normal: 1
        case .high: 2
        case .urgent: 3
        }
    }

    public static func < (lhs: MessagePriority, rhs: MessagePriority) -> Bool { lhs.rank < rhs.rank }

    /// The priority an event asks for, read from its content without parsing the rest: the `priority` field of an
    /// `m.room.message` or of an `m.room.encrypted` envelope, `normal` when absent, for any other type, or not one of
    /// the names. For transports, which order events they already verified; the content schema (§7.6, §14.3) is what
    /// refuses a bad value.
    public static func of(type: String, content: JSONObject?) -> MessagePriority {
        guard type == EventType.message || type == EventType.encrypted, case .string(let name)? = content?["priority"] else { return .normal }
        return MessagePriority(rawValue: name) ?? .normal
    }

    /// Reads the optional `priority` field of a content object; `normal` is refused, as it is written by absence.
    static func parse(_ reader: inout ContentReader) throws(ContentError) -> MessagePriority {
        guard reader.content["priority"] != nil else {
            reader.read.append("priority")
            return .normal
        }
        let priority = try reader.enumeration("priority", MessagePriority.self)
        guard priority != .normal else { throw ContentError("\(reader.type): priority normal is written by leaving the field out") }
        return priority
    }
}

/// What a forwarded message says of its original (docs/PROTOCOL.md §7.6): the original's event id (in any room), its
/// event hash and its sender. The forwarding event's signature vouches for the reference; a reader that holds or can
/// fetch the original checks that its hash, sender and text are what the reference and the forward say.
public struct ForwardReference: Sendable, Equatable, Hashable {
    /// The original's event id; its room part names the original's room.
    public var eventID: String
    /// The original's event hash (64 lowercase hex digits): the signed event as it travels, sealed or not.
    public var hash: String
    /// The original's sender (a user id).
    public var senderID: String

    public init(eventID: String, hash: String, senderID: String) {
        self.eventID = eventID
        self.hash = hash
        self.senderID = senderID
    }

    /// The original's room, from its event id.
    public var roomID: String { String(eventID.prefix { $0 != ":" }) }

    /// The `forwarded` object of an `m.room.message`.
    public var jsonObject: JSONObject {
        JSONObject(["event_id": .string(eventID), "hash": .string(hash), "sender": .string(senderID)])
    }

    /// Parses and checks the `forwarded` object of a message.
    /// - Throws: ``ContentError`` naming the field and rule.
    public static func parse(_ value: JSONValue) throws(ContentError) -> ForwardReference {
        let type = "m.room.message: forwarded"
        guard case .object(let object) = value else { throw ContentError("\(type) must be an object, found \(value.kindName)") }
        var reader = ContentReader(content: object, type: type)
        let eventID = try reader.string("event_id")
        if let problem = EventID.problem(with: eventID) { throw ContentError("\(type): event_id: \(problem)") }
        let hash = try reader.string("hash")
        guard Hex.isLowercaseHex(hash, byteCount: 32) else { throw ContentError("\(type): hash must be 64 lowercase hex digits") }
        let senderID = try reader.string("sender")
        if let problem = Identifier.problem(with: senderID, kind: .user) { throw ContentError("\(type): sender: \(problem)") }
        try reader.rejectUnread()
        return ForwardReference(eventID: eventID, hash: hash, senderID: senderID)
    }
}
