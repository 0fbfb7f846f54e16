/// One message of the relay's WebSocket protocol (docs/PROTOCOL.md §15.4): a JSON object in a text frame, its kind
/// named by `type`. Events travel inside frames as JSON objects whose canonical form (§2) is the event's wire form,
/// byte for byte.
public enum RelayFrame: Sendable, Equatable {
    // MARK: Client to relay

    /// The first frame a client sends: its session token and the device it speaks for.
    case auth(token: String, deviceKey: String)
    /// Asks for rooms' events: per room, the newest seq the client holds of each device chain.
    case subscribe([RoomHeads])
    /// Offers events to the relay; answered by one ``ack(id:results:)`` with a result per event, in order.
    case publish(id: Int64, events: [JSONValue])
    /// Asks for a page of a room's history: the `limit` events before the event `before` (the newest when `nil`).
    case history(id: Int64, roomID: String, before: String?, limit: Int)
    /// Says that the user is typing in a room, or stopped.
    case typing(roomID: String, isTyping: Bool)

    // MARK: Relay to client

    /// The relay took the token: the account and device it speaks for.
    case ready(userID: String, deviceKey: String)
    /// The relay's newest seq of each device chain of a room the client subscribed to.
    case heads(roomID: String, heads: [String: Int64])
    /// Events of a room, in the room's order: what a subscription catches up with, then live events.
    case events(roomID: String, events: [JSONValue])
    /// The subscription to a room has caught up: what follows is live.
    case synced(roomID: String)
    /// The verdicts on a ``publish(id:events:)``.
    case ack(id: Int64, results: [PublishResult])
    /// The answer to ``history(id:roomID:before:limit:)``: events oldest first, and whether older ones remain.
    case page(id: Int64, roomID: String, events: [JSONValue], hasMore: Bool)
    /// Someone is typing in a room, or stopped.
    case typingNotice(roomID: String, userID: String, isTyping: Bool)
    /// A frame the relay could not take, or a failure of the relay's; `id` names the request when it had one.
    case error(code: String, message: String, id: Int64?)

    /// The protocol version this implementation speaks, in the WebSocket path (`/v1/ws`).
    public static let version = 1
    /// The largest frame either side sends or accepts, in bytes (128 KiB).
    public static let maxFrameBytes = 131_072
    /// The most rooms one `subscribe` names.
    public static let maxRooms = 1_000
    /// The most device chains one room's heads name.
    public static let maxHeads = 10_000
    /// The most events one `publish`, `events` or `page` frame carries.
    public static let maxEvents = 1_000
    /// The most events one `history` request asks for.
    public static let maxHistoryLimit = 500

    /// Which side sent a frame: `typing` means one thing from a client and another from the relay.
    public enum Sender: Sendable { case client, relay }

    /// One room of a `subscribe`: the client's newest seq per device chain (chains it holds nothing of are left out).
    public struct RoomHeads: Sendable, Equatable {
        public var roomID: String
        public var heads: [String: Int64]
        public init(roomID: String, heads: [String: Int64]) {
            self.roomID = roomID
            self.heads = heads
        }
    }

    /// What the relay did with one published event.
    public struct PublishResult: Sendable, Equatable {
        public enum Verdict: String, Sendable {
            /// Stored and accepted by the room's state: the relay holds it for every member.
            case stored
            /// The relay already held the identical event.
            case duplicate
            /// Kept until the device's previous event arrives (§6.3): publish that one too.
            case held
            /// Not stored; `code` says why: one of §5.6's codes, `chain` (§6.2), `unauthorized` (§8), or one of the
            /// relay's (`not_your_device`, `wrong_sender`, `rate_limited`).
            case rejected
        }

        public var verdict: Verdict
        /// The event's id, when it parsed far enough to have one.
        public var eventID: String?
        public var code: String?
        public var reason: String?

        public init(_ verdict: Verdict, eventID: String?, code: String? = nil, reason: String? = nil) {
            self.verdict = verdict
            self.eventID = eventID
            self.code = code
            self.reason = reason
        }

        /// Whether the relay now holds the event: the client may count it as sent.
        public var isHeld: Bool { verdict == .stored || verdict == .duplicate }

        var json: JSONValue {
            var object = JSONObject(["result": .string(verdict.rawValue)])
            object["event_id"] = eventID.map(JSONValue.string)
            object["code"] = code.map(JSONValue.string)
            object["reason"] = reason.map(JSONValue.string)
            return .object(object)
        }

        init(json value: JSONValue) throws(RelayProtocolError) {
            guard case .object(let object) = value, case .string(let text)? = object["result"], let verdict = Verdict(rawValue: text) else {
                throw RelayProtocolError(.invalidMember, "A result is not an object with a known result.")
            }
            self.verdict = verdict
            eventID = try RelayFrame.optionalString(object["event_id"], "event_id")
            code = try RelayFrame.optionalString(object["code"], "code")
            reason = try RelayFrame.optionalString(object["reason"], "reason")
        }
    }

    /// The frame's `type`.
    public var type: String {
        switch self {
        case .auth: "auth"
        case .subscribe: "subscribe"
        case .publish: "publish"
        case .history: "history"
        case .typing, .typingNotice: "typing"
        case .ready: "ready"
        case .heads: "heads"
        case .events: "events"
        case .synced: "synced"
        case .ack: "ack"
        case .page: "page"
        case .error: "error"
        }
    }

    /// The JSON form.
    public var json: JSONValue {
        var object = JSONObject(["type": .string(type)])
        switch self {
        case .auth(let token, let deviceKey):
            object["token"] = .string(token)
            object["device_key"] = .string(deviceKey)
            object["v"] = .integer(Int64(Self.version))
        case .subscribe(let rooms):
            object["rooms"] = .array(rooms.map { ["room_id": .string($0.roomID), "heads": Self.headsJSON($0.heads)] })
        case .publish(let id, let events):
            object["id"] = .integer(id)
            object["events"] = .array(events)
        case .history(let id, let roomID, let before, let limit):
            object["id"] = .integer(id)
            object["room_id"] = .string(roomID)
            object["before"] = before.map(JSONValue.string)
            object["limit"] = .integer(Int64(limit))
        case .typing(let roomID, let isTyping):
            object["room_id"] = .string(roomID)
            object["typing"] = .bool(isTyping)
        case .ready(let userID, let deviceKey):
            object["user_id"] = .string(userID)
            object["device_key"] = .string(deviceKey)
            object["v"] = .integer(Int64(Self.version))
        case .heads(let roomID, let heads):
            object["room_id"] = .string(roomID)
            object["heads"] = Self.headsJSON(heads)
        case .events(let roomID, let events):
            object["room_id"] = .string(roomID)
            object["events"] = .array(events)
        case .synced(let roomID):
            object["room_id"] = .string(roomID)
        case .ack(let id, let results):
            object["id"] = .integer(id)
            object["results"] = .array(results.map(\.json))
        case .page(let id, let roomID, let events, let hasMore):
            object["id"] = .integer(id)
            object["room_id"] = .string(roomID)
            object["events"] = .array(events)
            object["more"] = .bool(hasMore)
        case .typingNotice(let roomID, let userID, let isTyping):
            object["room_id"] = .string(roomID)
            object["user_id"] = .string(userID)
            object["typing"] = .bool(isTyping)
        case .error(let code, let message, let id):
            object["code"] = .string(code)
            object["message"] = .string(message)
            object["id"] = id.map(JSONValue.integer)
        }
        return .object(object)
    }

    /// The frame's text: its canonical JSON.
    public var text: String { CanonicalJSON.string(json) }

    /// Reads one frame sent by `sender`.
    /// - Throws: ``RelayProtocolError``: `malformed_frame` (larger than ``maxFrameBytes``, not JSON, not an object, no
    ///   string `type`), `unknown_type`, or `invalid_member` naming the member at fault.
    public init(parsing bytes: some Collection<UInt8>, from sender: Sender) throws(RelayProtocolError) {
        guard bytes.count <= Self.maxFrameBytes else {
            throw RelayProtocolError(.malformedFrame, "The frame is \(bytes.count) bytes, more than \(Self.maxFrameBytes).")
        }
        let value: JSONValue
        do {
            // Deep enough for an event (32 levels) inside `events` inside the frame.
            value = try JSONParser(maxDepth: 35, maxBytes: Self.maxFrameBytes).parse(bytes)
        } catch {
            throw RelayProtocolError(.malformedFrame, "The frame is not JSON: \(error).")
        }
        guard case .object(let object) = value, case .string(let type)? = object["type"] else {
            throw RelayProtocolError(.malformedFrame, "The frame is not a JSON object with a string type.")
        }
        self = try Self.read(type: type, object, from: sender)
    }

    private static func read(type: String, _ object: JSONObject, from sender: Sender) throws(RelayProtocolError) -> RelayFrame {
        switch (sender, type) {
        case (.client, "auth"):
            return .auth(token: try string(object["token"], "token"), deviceKey: try deviceKey(object["device_key"]))
        case (.client, "subscribe"):
            guard case .array(let entries)? = object["rooms"], entries.count <= maxRooms else {
                throw RelayProtocolError(.invalidMember, "rooms is not an array of at most \(maxRooms) rooms.")
            }
            var rooms: [RoomHeads] = []
            for entry in entries {
                guard case .object(let room) = entry else { throw RelayProtocolError(.invalidMember, "A room of rooms is not an object.") }
                rooms.append(RoomHeads(roomID: try roomID(room["room_id"]), heads: try heads(room["heads"])))
            }
            return .subscribe(rooms)
        case (.client, "publish"):
            return .publish(id: try id(object["id"]), events: try events(object["events"]))
        case (.client, "history"):
            guard case .integer(let limit)? = object["limit"], (1...Int64(maxHistoryLimit)).contains(limit) else {
                throw RelayProtocolError(.invalidMember, "limit is not an integer from 1 to \(maxHistoryLimit).")
            }
            let before = try optionalString(object["before"], "before")
            if let before, EventID.problem(with: before) != nil {
                throw RelayProtocolError(.invalidMember, "before is not an event id.")
            }
            return .history(id: try id(object["id"]), roomID: try roomID(object["room_id"]), before: before, limit: Int(limit))
        case (.client, "typing"):
            return .typing(roomID: try roomID(object["room_id"]), isTyping: try bool(object["typing"], "typing"))
        case (.relay, "ready"):
            return .ready(userID: try userID(object["user_id"]), deviceKey: try deviceKey(object["device_key"]))
        case (.relay, "heads"):
            return .heads(roomID: try roomID(object["room_id"]), heads: try heads(object["heads"]))
        case (.relay, "events"):
            return .events(roomID: try roomID(object["room_id"]), events: try events(object["events"]))
        case (.relay, "synced"):
            return .synced(roomID: try roomID(object["room_id"]))
        case (.relay, "ack"):
            guard case .array(let entries)? = object["results"], entries.count <= maxEvents else {
                throw RelayProtocolError(.invalidMember, "results is not an array of at most \(maxEvents) results.")
            }
            var results: [PublishResult] = []
            for entry in entries { results.append(try PublishResult(json: entry)) }
            return .ack(id: try id(object["id"]), results: results)
        case (.relay, "page"):
            return .page(
                id: try id(object["id"]), roomID: try roomID(object["room_id"]), events: try events(object["events"]),
                hasMore: try bool(object["more"], "more"))
        case (.relay, "typing"):
            return .typingNotice(roomID: try roomID(object["room_id"]), userID: try userID(object["user_id"]), isTyping: try bool(object["typing"], "typing"))
        case (.relay, "error"):
            let id: Int64? = if case .integer(let id)? = object["id"] { id } else { nil }
            return .error(code: try string(object["code"], "code"), message: try string(object["message"], "message"), id: id)
        default:
            throw RelayProtocolError(.unknownType, "This relay protocol has no \(sender == .client ? "client" : "relay") frame of type \"\(type.prefix(64))\".")
        }
    }

    // MARK: Members

    static func string(_ value: JSONValue?, _ name: String) throws(RelayProtocolError) -> String {
        guard case .string(let text)? = value else { throw RelayProtocolError(.invalidMember, "\(name) is missing or not a string.") }
        return text
    }

    static func optionalString(_ value: JSONValue?, _ name: String) throws(RelayProtocolError) -> String? {
        switch value {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw RelayProtocolError(.invalidMember, "\(name) is not a string.")
        }
    }

    private static func bool(_ value: JSONValue?, _ name: String) throws(RelayProtocolError) -> Bool {
        guard case .bool(let flag)? = value else { throw RelayProtocolError(.invalidMember, "\(name) is missing or not true or false.") }
        return flag
    }

    private static func id(_ value: JSONValue?) throws(RelayProtocolError) -> Int64 {
        guard case .integer(let id)? = value, id >= 0 else { throw RelayProtocolError(.invalidMember, "id is missing or not a non-negative integer.") }
        return id
    }

    private static func roomID(_ value: JSONValue?) throws(RelayProtocolError) -> String {
        let text = try string(value, "room_id")
        guard Identifier.problem(with: text, kind: .room) == nil else { throw RelayProtocolError(.invalidMember, "room_id is not a room id.") }
        return text
    }

    private static func userID(_ value: JSONValue?) throws(RelayProtocolError) -> String {
        let text = try string(value, "user_id")
        guard Identifier.problem(with: text, kind: .user) == nil else { throw RelayProtocolError(.invalidMember, "user_id is not a user id.") }
        return text
    }

    private static func deviceKey(_ value: JSONValue?) throws(RelayProtocolError) -> String {
        let text = try string(value, "device_key")
        guard Base64.isCanonical(text, byteCount: 32) else { throw RelayProtocolError(.invalidMember, "device_key is not strict base64 of 32 bytes.") }
        return text
    }

    private static func events(_ value: JSONValue?) throws(RelayProtocolError) -> [JSONValue] {
        guard case .array(let events)? = value, events.count <= maxEvents, events.allSatisfy({ $0.objectValue != nil }) else {
            throw RelayProtocolError(.invalidMember, "events is not an array of at most \(maxEvents) objects.")
        }
        return events
    }

    private static func heads(_ value: JSONValue?) throws(RelayProtocolError) -> [String: Int64] {
        guard case .object(let object)? = value, object.count <= maxHeads else {
            throw RelayProtocolError(.invalidMember, "heads is not an object of at most \(maxHeads) device keys.")
        }
        var heads: [String: Int64] = [:]
        for member in object.members {
            guard Base64.isCanonical(member.key, byteCount: 32), case .integer(let seq) = member.value, seq >= 1 else {
                throw RelayProtocolError(.invalidMember, "heads maps a device key (strict base64 of 32 bytes) to a seq of at least 1.")
            }
            heads[member.key] = seq
        }
        return heads
    }

    private static func headsJSON(_ heads: [String: Int64]) -> JSONValue {
        var object = JSONObject()
        for (key, seq) in heads { object[key] = .integer(seq) }
        return .object(object)
    }
}
