import Foundation
import GRDB
import ParleyCore

// The query API (`parley query`, `GET /v1/query`): accepted events matching filters, room by room in each room's total
// order (docs/PROTOCOL.md §8.1), paged by cursors that name the last event returned.

/// What to look for. Every filter given must hold.
public struct EventQuery: Sendable, Equatable {
    public static let maxLimit = 1000

    public var roomID: String?
    public var senderID: String?
    /// An event type; sealed events match by the type inside once opened.
    public var type: String?
    /// Events at or after this time (Unix ms).
    public var sinceMs: Int64?
    /// Events at or before this time (Unix ms).
    public var untilMs: Int64?
    /// Only messages that share a file.
    public var hasFile = false
    /// Only messages of this priority (a sealed one's is on its envelope).
    public var priority: MessagePriority?
    /// Words that must all appear in a message's current text.
    public var text: String?
    public var limit = 50
    /// Resume after the event this cursor names.
    public var after: QueryCursor?
    /// Whether a common word may be looked for by reading the range in order, checking each event: fast when the word
    /// is in most events; when the first ``inOrderBudget`` events do not fill the page, its matches are gathered after
    /// all, which costs in proportion to them.
    public var readsInOrder = true

    /// From this many matches in the whole store on, a word is common (see ``readsInOrder``).
    var commonWordMatches = 20_000
    /// How many events reading in order looks at before gathering the word's matches after all: each costs a look-up
    /// in the full-text index (about 20 µs).
    static let inOrderBudget = 2_000

    public init() {}
}

extension EventQuery {
    /// Short names `--type` takes besides full event types.
    static let shortTypes: [String: String] = [
        "message": EventType.message, "edit": EventType.edit, "reaction": EventType.reaction, "redaction": EventType.redaction,
        "receipt": EventType.receipt, "member": EventType.member, "name": EventType.name, "topic": EventType.topic,
        "create": EventType.create, "power_levels": EventType.powerLevels, "encryption": EventType.encryption, "key": EventType.roomKey,
    ]

    /// A query from named parameters, as `parley query` and `GET /v1/query` take them: `room`, `sender`, `type`,
    /// `since`, `until`, `priority` (`low`, `normal`, `high`, `urgent`), `has_file` (`true` or `false`), `text`, `limit`
    /// (1–1000) and `cursor`.
    /// - Throws: ``StoreError`` `.invalidArgument` naming the parameter and what it accepts.
    public init(parameters: [(name: String, value: String)]) throws {
        self.init()
        var seen: Set<String> = []
        for (name, value) in parameters {
            guard seen.insert(name).inserted else { throw StoreError(.invalidArgument, "\(name) is given twice; give it once.") }
            switch name {
            case "room":
                if let problem = Identifier.problem(with: value, kind: .room) { throw StoreError(.invalidArgument, "room: \(problem).") }
                roomID = value
            case "sender":
                if let problem = Identifier.problem(with: value, kind: .user) { throw StoreError(.invalidArgument, "sender: \(problem).") }
                senderID = value
            case "type":
                let full = Self.shortTypes[value] ?? value
                if let problem = EventTypeName.problem(with: full) {
                    throw StoreError(
                        .invalidArgument, "type: \(problem).",
                        remedy: "Give an event type (m.room.message) or one of \(Self.shortTypes.keys.sorted().joined(separator: ", ")).")
                }
                type = full
            case "since": sinceMs = try Self.time(value, name)
            case "until": untilMs = try Self.time(value, name)
            case "priority":
                guard let level = MessagePriority(rawValue: value) else {
                    throw StoreError(.invalidArgument, "priority must be one of \(MessagePriority.allCases.map(\.rawValue).joined(separator: ", ")).")
                }
                priority = level
            case "has_file":
                guard let flag = ["true": true, "false": false][value] else { throw StoreError(.invalidArgument, "has_file must be true or false.") }
                hasFile = flag
            case "text":
                guard !value.allSatisfy(\.isWhitespace) else { throw StoreError(.invalidArgument, "text: give at least one word to look for.") }
                text = value
            case "limit":
                guard let number = Int(value), (1...Self.maxLimit).contains(number) else {
                    throw StoreError(.invalidArgument, "limit must be a number from 1 to \(Self.maxLimit).")
                }
                limit = number
            case "cursor":
                guard let cursor = QueryCursor(text: value) else {
                    throw StoreError(.invalidArgument, "cursor is not one this node gave.", remedy: "Pass next_cursor from the previous page as it is.")
                }
                after = cursor
            default:
                throw StoreError(
                    .invalidArgument, "There is no query parameter \(name).",
                    remedy: "Use room, sender, type, since, until, priority, has_file, text, limit or cursor.")
            }
        }
        if let sinceMs, let untilMs, sinceMs > untilMs { throw StoreError(.invalidArgument, "since is after until: nothing can match.") }
    }

    /// A time as Unix milliseconds, `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS[.mmm]]Z`.
    static func time(_ text: String, _ name: String) throws -> Int64 {
        if !text.isEmpty, text.utf8.count <= 15, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let ms = Int64(text) { return ms }
        let bytes = Array(text.utf8)
        func digits(_ range: Range<Int>) -> String? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return String(decoding: bytes[range], as: UTF8.self)
        }
        var stamp: String?
        if let year = digits(0..<4), let month = digits(5..<7), let day = digits(8..<10), bytes.count >= 10, bytes[4] == 0x2D, bytes[7] == 0x2D {
            if bytes.count == 10 {
                stamp = "\(year)\(month)\(day)T000000.000Z"
            } else if bytes.count >= 17, bytes[10] == UInt8(ascii: "T"), bytes.last == UInt8(ascii: "Z"), let hour = digits(11..<13), bytes[13] == 0x3A,
                let minute = digits(14..<16)
            {
                let rest = bytes[16..<(bytes.count - 1)]
                if rest.isEmpty {
                    stamp = "\(year)\(month)\(day)T\(hour)\(minute)00.000Z"
                } else if rest.count == 3, rest.first == 0x3A, let second = digits(17..<19) {
                    stamp = "\(year)\(month)\(day)T\(hour)\(minute)\(second).000Z"
                } else if rest.count == 7, rest.first == 0x3A, let second = digits(17..<19), bytes[19] == 0x2E, let millis = digits(20..<23) {
                    stamp = "\(year)\(month)\(day)T\(hour)\(minute)\(second).\(millis)Z"
                }
            }
        }
        guard let stamp, let ms = EventID.parseTimestamp(stamp) else {
            throw StoreError(
                .invalidArgument, "\(name): \(text) is not a time.",
                remedy: "Give Unix milliseconds, a date (2026-12-05) or a UTC time (2026-12-05T10:30Z, 2026-12-05T10:30:15.250Z).")
        }
        return ms
    }
}

/// A place in the results: the room and the order of the last event returned. Events never move in their room's
/// order, so a cursor stays valid and pages never repeat or skip what existed when the first page was read.
public struct QueryCursor: Sendable, Equatable {
    public var roomID: String
    public var order: EventOrder

    public init(roomID: String, order: EventOrder) {
        self.roomID = roomID
        self.order = order
    }

    /// The cursor as text: base64url of the canonical JSON `[room_id, timestamp_ms, seq, event_id, sender_key]`.
    public var text: String {
        let json = CanonicalJSON.encode(
            .array([.string(roomID), .integer(order.timestampMs), .integer(order.seq), .string(order.eventID), .string(order.senderKey)]))
        return Base64.encode(json).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Reads a cursor that ``text`` wrote; `nil` for anything else.
    public init?(text: String) {
        guard text.utf8.count <= 1024 else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        guard let bytes = Base64.decode(standard), case .array(let parts)? = try? JSONParser().parse(bytes), parts.count == 5,
            case .string(let roomID) = parts[0], case .integer(let timestampMs) = parts[1], case .integer(let seq) = parts[2],
            case .string(let eventID) = parts[3], case .string(let senderKey) = parts[4]
        else { return nil }
        self.init(roomID: roomID, order: EventOrder(timestampMs: timestampMs, seq: seq, eventID: eventID, senderKey: senderKey))
    }
}

/// An event a query found, as this node reads it: a sealed one with the type and content inside once opened.
public struct QueryHit: Sendable {
    public var event: Event
    /// The event's type and content as read: for a sealed event, what is inside (`m.room.encrypted` and no content
    /// while this node cannot open it).
    public var type: String
    public var content: JSONObject?
}

extension EventStore {
    static func registerQueryMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v15-query-indexes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event_files (event_row INTEGER PRIMARY KEY, room_id TEXT NOT NULL);
                    INSERT INTO event_files (event_row, room_id)
                        SELECT id, room_id FROM events
                        WHERE type = 'm.room.message' AND json_extract(CAST(wire AS TEXT), '$.content.file') IS NOT NULL;
                    INSERT OR IGNORE INTO event_files (event_row, room_id)
                        SELECT event_row, room_id FROM plaintexts
                        WHERE type = 'm.room.message' AND json_extract(CAST(content AS TEXT), '$.file') IS NOT NULL;
                    CREATE INDEX events_sender_order ON events (sender_id, room_id, timestamp_ms, seq, event_id, sender_key);
                    """)
        }
    }

    static func registerPriorityMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v17-priority-index") { db in
            try db.execute(
                sql: """
                    CREATE INDEX events_priority ON events (room_id, timestamp_ms, seq, event_id, sender_key)
                        WHERE json_extract(CAST(wire AS TEXT), '$.content.priority') IS NOT NULL
                    """)
        }
    }

    /// A message's priority as the store reads it: the `priority` of its content, or of its sealed envelope (§14.3).
    /// Most messages have none, so a partial index (`events_priority`, on the same expression) holds only the others,
    /// in each room's order.
    static let priorityExpression = "json_extract(CAST(e.wire AS TEXT), '$.content.priority')"

    /// Notes that the event stored at `row` is a message sharing a file, for `--has-file`.
    static func recordFileMessage(_ db: Database, row: Int64, roomID: String) throws {
        try db.cachedStatement(sql: "INSERT OR IGNORE INTO event_files (event_row, room_id) VALUES (?, ?)").execute(arguments: [row, roomID])
    }

    /// The accepted, unredacted events matching `query`, in the order of ``QueryCursor``; and the cursor to read on
    /// from, when more may follow.
    public func query(_ query: EventQuery) throws -> (hits: [QueryHit], next: QueryCursor?) {
        if query.text != nil { try catchUpSearchIndex() }
        return try pool.read { db in
            var conditions = ["e.status = 0", "e.redacted = 0"]
            var arguments = StatementArguments()
            // State and room keys are never sealed, and a partial index holds them in each room's order: a query for
            // one of them reads that index, not the whole room.
            let typeCondition = query.type.map(EventType.isReplayed) == true ? "e.type = ? AND \(EventStore.replayedCondition)" : "COALESCE(p.type, e.type) = ?"
            let filters: [(sql: String, value: (any DatabaseValueConvertible)?)] = [
                ("e.room_id = ?", query.roomID), ("e.sender_id = ?", query.senderID), (typeCondition, query.type),
                ("e.timestamp_ms >= ?", query.sinceMs), ("e.timestamp_ms <= ?", query.untilMs),
            ]
            for (sql, value) in filters {
                guard let value else { continue }
                conditions.append(sql)
                arguments += [value]
            }
            switch query.priority {
            case nil: break
            case .normal?: conditions += ["COALESCE(p.type, e.type) = 'm.room.message'", "\(EventStore.priorityExpression) IS NULL"]
            case let level?:
                // Written as the partial index's condition, so the planner reads that index.
                conditions += [
                    "COALESCE(p.type, e.type) = 'm.room.message'", "\(EventStore.priorityExpression) IS NOT NULL", "\(EventStore.priorityExpression) = ?",
                ]
                arguments += [level.rawValue]
            }
            var match: String?
            var readsInOrder = false
            if let text = query.text {
                guard let words = EventStore.searchMatch(text) else { return ([], nil) }
                match = words
                // A rare word's few matches are gathered first. A common word's would cost more to gather (a third of
                // a second for a million) than reading the range in order and looking each event up, which finds a
                // page at once where the word is common; where the range holds few of them, reading stops after a
                // bounded number of events and the matches are gathered after all.
                let probe =
                    try Int.fetchOne(
                        db, sql: "SELECT count(*) FROM (SELECT rowid FROM message_search WHERE message_search MATCH ? LIMIT ?)",
                        arguments: [words, query.commonWordMatches]) ?? 0
                readsInOrder = probe >= query.commonWordMatches && query.readsInOrder
            }
            // Few messages share files: their table leads, and the matches are sorted.
            let source = query.hasFile ? "event_files f CROSS JOIN events e ON e.id = f.event_row" : "events e"
            let limit = min(max(query.limit, 1), EventQuery.maxLimit)
            let order = "e.room_id, e.timestamp_ms, e.seq, e.event_id, e.sender_key"
            func fetch(_ extra: String?, _ extraArguments: StatementArguments, limit: Int, inOrder: Bool) throws -> [Row] {
                let filter = (conditions + [extra].compactMap { $0 }).joined(separator: " AND ")
                guard let match else {
                    return try Row.fetchAll(
                        db,
                        sql: """
                            SELECT e.wire, p.type, p.content FROM \(source) LEFT JOIN plaintexts p ON p.event_row = e.id
                            WHERE \(filter) ORDER BY \(order) LIMIT ?
                            """, arguments: arguments + extraArguments + [limit])
                }
                guard inOrder else {
                    return try Row.fetchAll(
                        db,
                        sql: """
                            SELECT e.wire, p.type, p.content FROM \(source) LEFT JOIN plaintexts p ON p.event_row = e.id
                            WHERE \(filter) AND e.id IN (SELECT rowid FROM message_search WHERE message_search MATCH ?) ORDER BY \(order) LIMIT ?
                            """, arguments: arguments + extraArguments + [match, limit])
                }
                return try Row.fetchAll(
                    db,
                    sql: """
                        SELECT e.wire, p.type, p.content FROM (
                            SELECT e.id AS id FROM \(source) LEFT JOIN plaintexts p ON p.event_row = e.id
                            WHERE \(filter) ORDER BY \(order) LIMIT ?
                        ) c CROSS JOIN events e ON e.id = c.id LEFT JOIN plaintexts p ON p.event_row = e.id
                        WHERE EXISTS (SELECT 1 FROM message_search s WHERE s.rowid = c.id AND message_search MATCH ?)
                        LIMIT ?
                        """, arguments: arguments + extraArguments + [EventQuery.inOrderBudget, match, limit])
            }
            func page(inOrder: Bool) throws -> [Row] {
                guard let after = query.after else { return try fetch(nil, [], limit: limit + 1, inOrder: inOrder) }
                // The rest of the cursor's room, then the rooms after it: each an index range (one comparison over the
                // five columns would read the cursor's room from its start).
                let at = after.order
                var rows = try fetch(
                    "e.room_id = ? AND (e.timestamp_ms, e.seq, e.event_id, e.sender_key) > (?, ?, ?, ?)",
                    [after.roomID, at.timestampMs, at.seq, at.eventID, at.senderKey], limit: limit + 1, inOrder: inOrder)
                // Reading in order may have stopped inside the cursor's room: then the page is short, and gathered.
                if rows.count <= limit, query.roomID == nil, !inOrder {
                    rows += try fetch("e.room_id > ?", [after.roomID], limit: limit + 1 - rows.count, inOrder: inOrder)
                }
                return rows
            }
            // The candidates come in order and are checked in that order (the ordered subquery leads the join), so
            // the first matches are the page: sorting them all again would check every candidate.
            var rows = try page(inOrder: readsInOrder)
            // Reading in order looked at a bounded number of events: a short page may only mean the word is rare here.
            if readsInOrder && rows.count <= limit { rows = try page(inOrder: false) }
            var hits: [QueryHit] = []
            for row in rows.prefix(limit) {
                let event = try Event.parse((row[0] as Data).bytes)
                if let type: String = row[1], let content: Data = row[2] {
                    let view = try EventStore.plaintextView(of: event, type: type, content: content.bytes)
                    hits.append(QueryHit(event: event, type: type, content: view.content))
                } else {
                    hits.append(QueryHit(event: event, type: event.type, content: event.type == EventType.encrypted ? nil : event.content))
                }
            }
            let next = rows.count > limit ? hits.last.map { QueryCursor(roomID: $0.event.roomID, order: EventOrder($0.event)) } : nil
            return (hits, next)
        }
    }

    /// ``RoomAuthorizer/replayedTypesCondition`` for the `events` table named `e`.
    static let replayedCondition = "(" + EventType.replayedTypes.sorted().map { "e.type = '\($0)'" }.joined(separator: " OR ") + ")"
}
