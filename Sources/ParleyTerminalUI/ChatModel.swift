import Foundation
import ParleyClient

/// A room as the room list shows it.
public struct ChatRoom: Sendable, Equatable {
    public var id: String
    public var name: String?
    public var encrypted: Bool
    public var unread: Int
    public var mentions: Int
    /// The other person of a direct-message room.
    public var directPeer: String?
    public var members: Int

    /// What the list shows: the other person of a DM, else the name, else the id.
    public var title: String { directPeer.map { "@\($0)" } ?? name ?? id }

    public init(json: JSONValue) {
        id = json["room_id"]?.stringValue ?? "?"
        name = json["name"]?.stringValue
        encrypted = json["encrypted"]?.boolValue ?? false
        unread = Int(json["unread"]?.integerValue ?? 0)
        mentions = Int(json["mentions"]?.integerValue ?? 0)
        directPeer = json["direct_peer"]?.stringValue
        members = json["members"]?.arrayValue?.count ?? Int(json["members"]?.integerValue ?? 0)
    }
}

/// A timeline item as the API gives it (`parley log --json`'s shape).
public struct ChatItem: Sendable, Equatable {
    public var eventID: String
    public var sender: String
    public var timestampMs: Int64
    public var type: String
    public var msgtype: String?
    public var body: String?
    public var edited: Bool
    public var redacted: Bool
    /// `high` or `urgent`, shown; `nil` for the others.
    public var priority: String?
    /// For a forward, what is shown of its origin: `forwarded from alice, checked`.
    public var forwarded: String?
    /// Reaction keys with the users who reacted, in the order the API gives them.
    public var reactions: [(key: String, users: [String])]
    /// The reaction events behind them.
    public var reactionEvents: [(eventID: String, key: String, sender: String)]
    public var parentEventID: String?
    public var summary: String?
    public var undecryptable: Bool
    /// This device's own, not yet taken by a transport when the node said so (`pending` in the timeline's items; a new
    /// one of this device's from the stream is, until `message:sent`).
    public var pending: Bool
    /// How far another device's receipt got with this device's own (`delivery` in the timeline's items): `delivered`,
    /// `read`, or `nil`.
    public var receipt: String?

    public var isMessage: Bool { type == "m.room.message" || type == "m.room.encrypted" }

    public init(json: JSONValue) {
        eventID = json["event_id"]?.stringValue ?? "?"
        sender = json["sender_id"]?.stringValue ?? "?"
        timestampMs = json["timestamp_ms"]?.integerValue ?? 0
        type = json["type"]?.stringValue ?? ""
        msgtype = json["msgtype"]?.stringValue
        body = json["body"]?.stringValue
        if msgtype == "file", let file = json["file"] {
            body = TerminalText.fileLine(
                name: file["name"]?.stringValue ?? "?", size: file["size"]?.integerValue ?? 0, width: file["width"]?.integerValue,
                height: file["height"]?.integerValue, caption: body)
        }
        edited = json["edited"]?.boolValue ?? false
        redacted = json["redacted"]?.boolValue ?? false
        priority = json["priority"]?.stringValue.flatMap { ["high", "urgent"].contains($0) ? $0 : nil }
        if let forward = json["forwarded"], let from = forward["sender_id"]?.stringValue {
            let check =
                switch forward["check"]?.stringValue {
                case "matches": "checked"
                case "differs": "DOES NOT MATCH the original"
                default: "original not held"
                }
            forwarded = "forwarded from \(from), \(check)"
        }
        reactions = (json["reactions"]?.objectValue?.members ?? []).map { ($0.key, $0.value.arrayValue?.compactMap(\.stringValue) ?? []) }
        reactionEvents = (json["reaction_events"]?.arrayValue ?? []).compactMap { record in
            guard let id = record["event_id"]?.stringValue, let key = record["key"]?.stringValue, let sender = record["sender_id"]?.stringValue else {
                return nil
            }
            return (id, key, sender)
        }
        parentEventID = json["parent_event_id"]?.stringValue
        summary = json["summary"]?.stringValue
        undecryptable = json["undecryptable"]?.boolValue ?? false
        pending = json["pending"]?.boolValue ?? false
        if let delivery = json["delivery"] {
            receipt =
                (delivery["read"]?.integerValue ?? 0) > 0 ? "read" : (delivery["delivered"]?.integerValue ?? 0) > 0 ? "delivered" : nil
        }
    }

    public static func == (lhs: ChatItem, rhs: ChatItem) -> Bool {
        lhs.eventID == rhs.eventID && lhs.body == rhs.body && lhs.edited == rhs.edited && lhs.redacted == rhs.redacted
            && lhs.reactions.map(\.key) == rhs.reactions.map(\.key) && lhs.reactions.map(\.users) == rhs.reactions.map(\.users)
            && lhs.undecryptable == rhs.undecryptable && lhs.summary == rhs.summary
    }
}

/// Everything the terminal UI shows, changed only by what the user types and what the node says: no I/O, so that
/// what the screen shows can be tested without a terminal.
public struct ChatModel: Sendable {
    public var me = ""
    public var rooms: [ChatRoom] = []
    public var selectedRoom: String?
    /// Each room's loaded items, oldest first.
    public var items: [String: [ChatItem]] = [:]
    /// Rooms whose first item is loaded.
    public var reachedStart: Set<String> = []
    /// Lines scrolled up from the newest.
    public var scroll = 0
    /// The message the next /edit, /react, /reply or /redact is about, when one is selected (Shift-Up/Down).
    public var selectedEvent: String?
    /// The message the next line sent replies to.
    public var replyingTo: String?
    /// Events of this device a transport confirmed.
    public var sent: Set<String> = []
    /// Events of this device a transport could not take yet, with the reason.
    public var failed: [String: String] = [:]
    /// Events of this device another device's receipt covers, from the stream: `delivered` or `read`.
    public var receipts: [String: String] = [:]
    /// Who types where, until when.
    public var typing: [String: [String: Date]] = [:]
    public var connected = false
    /// The last error or notice, shown on the status line until the next key.
    public var notice: String?
    public var noticeIsError = false
    /// Lines of an answer to show (help, search results, members) over the timeline until a key is pressed.
    public var panel: [String] = []
    public var input = LineEditor()

    public init() {}

    public var room: ChatRoom? { rooms.first { $0.id == selectedRoom } }
    public var roomItems: [ChatItem] { selectedRoom.flatMap { items[$0] } ?? [] }

    public mutating func select(room id: String) {
        guard rooms.contains(where: { $0.id == id }) else { return }
        selectedRoom = id
        scroll = 0
        selectedEvent = nil
        replyingTo = nil
    }

    /// The room after (or before) the selected one.
    public mutating func selectRoom(offset: Int) {
        guard !rooms.isEmpty else { return }
        let index = rooms.firstIndex { $0.id == selectedRoom } ?? 0
        select(room: rooms[(index + offset % rooms.count + rooms.count) % rooms.count].id)
    }

    /// Moves the message selection one message older (`-1`) or newer (`+1`); past the newest it ends.
    public mutating func moveSelection(_ step: Int) {
        let messages = roomItems.filter(\.isMessage)
        guard !messages.isEmpty else { return }
        guard let current = selectedEvent, let index = messages.firstIndex(where: { $0.eventID == current }) else {
            if step < 0 { selectedEvent = messages.last?.eventID }
            return
        }
        let next = index + step
        selectedEvent = next >= messages.count ? nil : messages[max(0, next)].eventID
    }

    /// The item a command is about: the selection, else the newest message (the newest of this user's own when `own`).
    public func target(own: Bool) -> ChatItem? {
        let items = roomItems
        if let selectedEvent, let item = items.first(where: { $0.eventID == selectedEvent }) { return item }
        return items.last { $0.isMessage && !$0.redacted && (!own || $0.sender == me) }
    }

    /// Puts a page of older items before the loaded ones (the API gives them oldest first).
    public mutating func prepend(_ page: [ChatItem], room: String, complete: Bool) {
        let known = Set(items[room, default: []].map(\.eventID))
        items[room, default: []].insert(contentsOf: page.filter { !known.contains($0.eventID) }, at: 0)
        if complete { reachedStart.insert(room) }
    }

    /// A new item, or a changed one (an edit, a reaction, a redaction, a key that arrived), from the stream.
    public mutating func apply(item: ChatItem, room: String, isNew: Bool) {
        var list = items[room, default: []]
        var item = item
        if let index = list.firstIndex(where: { $0.eventID == item.eventID }) {
            item.pending = list[index].pending
            item.receipt = list[index].receipt
            list[index] = item
        } else if isNew || items[room] != nil {
            item.pending = isNew && item.sender == me
            let position = list.lastIndex { $0.timestampMs <= item.timestampMs }.map { $0 + 1 } ?? 0
            list.insert(item, at: position)
            if item.sender != me, room != selectedRoom, item.isMessage, let index = rooms.firstIndex(where: { $0.id == room }) {
                rooms[index].unread += 1
            }
        }
        items[room] = list
        typing[room]?[item.sender] = nil
    }

    /// Typing notices that have not expired at `now`, in this room.
    public func typists(at now: Date) -> [String] {
        guard let room = selectedRoom else { return [] }
        return (typing[room] ?? [:]).filter { $0.value > now && $0.key != me }.map(\.key).sorted()
    }

    public mutating func say(_ text: String, error: Bool = false) {
        notice = text
        noticeIsError = error
    }
}
