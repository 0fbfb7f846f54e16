import Foundation
import GRDB
import ParleyCore
import ParleySync

/// One full-text search result.
public struct SearchHit: Sendable {
    public var roomID: String
    public var item: TimelineItem
}

/// A stored event with its authorization.
public struct StoredEvent: Sendable {
    public var event: VerifiedEvent
    public var status: EventStatus
    public var reason: String?
}

/// An entry of the rejected-events log.
public struct RejectedEvent: Sendable {
    public var receivedMs: Int64
    public var roomID: String?
    public var eventID: String?
    public var reason: String
}

extension EventStore {
    static let itemTypesSQL = "(" + Timeline.itemTypes.sorted().map { "'\($0)'" }.joined(separator: ", ") + ")"

    /// The newest `limit` timeline items of `roomID` that come before `before` (or the newest overall), oldest first,
    /// with edits, reactions and redactions applied. Sealed events show as what they contain once this device
    /// opened them, and as undecryptable items until then; sealed edits and reactions apply like plain ones.
    public func timeline(roomID: String, limit: Int, before: EventOrder? = nil) throws -> [TimelineItem] {
        try pool.read { db in
            var sql = """
                SELECT id, wire FROM events WHERE room_id = ? AND status = 0 AND type IN \(EventStore.itemTypesSQL)
                    AND (type != 'm.room.encrypted' OR NOT EXISTS (
                        SELECT 1 FROM plaintexts p WHERE p.event_row = events.id AND (p.type IS NULL OR p.type NOT IN \(EventStore.itemTypesSQL))))
                """
            var arguments: StatementArguments = [roomID]
            if let before {
                sql += " AND (\(RoomAuthorizer.orderColumns)) < (?, ?, ?, ?)"
                arguments += RoomAuthorizer.orderArguments(before)
            }
            sql += " ORDER BY timestamp_ms DESC, seq DESC, event_id DESC, sender_key DESC LIMIT ?"
            arguments += [limit]
            let items = try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                try EventStore.decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[0])
            }
            let relations = try EventStore.relations(db: db, targets: items.map(\.eventID))
            return try EventStore.resolvedTimeline(db: db, items: items, relations: relations)
        }
    }

    /// The timeline items of every accepted event carrying `eventID`, in the total order: one, unless a device copied
    /// the id (§6.5).
    public func items(eventID: String) throws -> [TimelineItem] {
        try pool.read { db in
            let events = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT id, wire FROM events WHERE event_id = ? AND status = 0 ORDER BY \(RoomAuthorizer.orderColumns)"),
                arguments: [eventID]
            ).map { try EventStore.decryptedView(db: db, event: Event.parse(($0[1] as Data).bytes), row: $0[0]) }
            guard !events.isEmpty else { return [] }
            return try EventStore.resolvedTimeline(db: db, items: events, relations: try EventStore.relations(db: db, targets: [eventID]))
        }
    }

    /// The timeline item of one accepted event, with its edits, reactions and redaction applied.
    public func item(eventID: String) throws -> TimelineItem? {
        try pool.read { db in
            // Of several accepted events carrying the id (another device copied it), the first in the total order.
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(sql: "SELECT id, wire FROM events WHERE event_id = ? AND status = 0 ORDER BY \(RoomAuthorizer.orderColumns) LIMIT 1"),
                    arguments: [eventID])
            else { return nil }
            let event = try EventStore.decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[0])
            return try EventStore.resolvedTimeline(db: db, items: [event], relations: try EventStore.relations(db: db, targets: [eventID])).first
        }
    }

    /// The event an accepted edit or reaction refers to, redacted or not (a sealed one once this device opened it);
    /// `nil` for other events.
    public func relationTarget(of eventID: String) throws -> String? {
        try pool.read { db in
            try String.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT COALESCE(e.target_event_id, p.target_event_id) FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id
                        WHERE e.event_id = ? AND e.status = 0 AND COALESCE(p.type, e.type) IN ('m.room.edit', 'm.room.reaction') LIMIT 1
                        """), arguments: [eventID])
        }
    }

    /// Accepted edits, reactions and redactions that refer to any of `targets`, sealed ones included once opened.
    static func relations(db: Database, targets: [String]) throws -> [Event] {
        var result: [Event] = []
        for chunk in targets.chunks(of: inListChunk) {
            result += try Data.fetchAll(
                db,
                sql: """
                    SELECT wire FROM events WHERE target_event_id IN (\(placeholders(chunk.count))) AND status = 0
                        AND type IN ('m.room.edit', 'm.room.reaction', 'm.room.redaction')
                    """, arguments: StatementArguments(Array(chunk))
            ).map { try Event.parse($0) }
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT e.wire, p.type, p.content FROM plaintexts p JOIN events e ON e.id = p.event_row
                    WHERE p.target_event_id IN (\(placeholders(chunk.count))) AND e.status = 0 AND e.redacted = 0
                        AND p.type IN ('m.room.edit', 'm.room.reaction')
                    """, arguments: StatementArguments(Array(chunk)))
            {
                result.append(try plaintextView(of: Event.parse((row[0] as Data).bytes), type: row[1], content: (row[2] as Data).bytes))
            }
        }
        return result
    }

    /// Calls `body` with the exact wire bytes of every chained event of `roomID`, in event order. Unauthorized
    /// events are included: they are links of their devices' chains, and a peer importing this needs them.
    public func forEachEvent(roomID: String, _ body: ([UInt8]) throws -> Void) throws {
        try pool.read { db in
            let cursor = try Data.fetchCursor(
                db, sql: "SELECT wire FROM events WHERE room_id = ? ORDER BY \(RoomAuthorizer.orderColumns)", arguments: [roomID])
            while let wire = try cursor.next() { try body(wire.bytes) }
        }
    }

    /// The exact wire bytes of the chained events of `roomID` dated `fromMs` … `throughMs`, accepted or not, in event
    /// order.
    public func eventWires(roomID: String, fromMs: Int64, throughMs: Int64) throws -> [[UInt8]] {
        try pool.read { db in
            try Data.fetchAll(
                db.cachedStatement(
                    sql: "SELECT wire FROM events WHERE room_id = ? AND timestamp_ms BETWEEN ? AND ? ORDER BY \(RoomAuthorizer.orderColumns)"),
                arguments: [roomID, fromMs, throughMs]
            ).map(\.bytes)
        }
    }

    /// The resolved state of `roomID`, or `nil` if the store holds none of its events.
    public func roomState(roomID: String) throws -> RoomState? {
        try roomStateAndVersion(roomID: roomID)?.state
    }

    /// The room's state with its version, which changes whenever an accepted state or key event changes the state:
    /// callers may cache what they derive from a state under its version.
    public func roomStateAndVersion(roomID: String) throws -> (state: RoomState, version: Int64)? {
        try pool.read { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT state_version, create_hash FROM rooms WHERE room_id = ?"), arguments: [roomID])
            else { return nil }
            let version: Int64 = row[0]
            if let cached = cache.get(roomID, version: version) { return (cached, version) }
            let state = try RoomAuthorizer.resolveState(db: db, roomID: roomID, before: nil, pinnedCreateHash: row[1])
            cache.set(state, version: version, for: roomID)
            return (state, version)
        }
    }

    /// Ids of every room the store holds events of.
    public func roomIDs() throws -> [String] {
        try pool.read { db in try String.fetchAll(db.cachedStatement(sql: "SELECT room_id FROM rooms ORDER BY room_id")) }
    }

    /// The time of the newest event the room's order holds, if any.
    public func latestTimestamp(roomID: String) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db.cachedStatement(sql: "SELECT last_timestamp_ms FROM rooms WHERE room_id = ?"), arguments: [roomID]) }
    }

    /// The newest event of a device's chain in a room, held or not yet authorized.
    public func chainHead(roomID: String, senderKey: String) throws -> ChainLink? {
        try pool.read { db in
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT seq, hash, timestamp_ms FROM events WHERE room_id = ? AND sender_key = ? ORDER BY seq DESC LIMIT 1"),
                arguments: [roomID, senderKey])
            return row.map { ChainLink(seq: $0[0], hash: $0[1], timestampMs: $0[2]) }
        }
    }

    /// The stored event with `eventID`, if any: of several carrying the id (another device copied it), the one
    /// `preferringSender` signed, then an accepted one, then the first in the total order.
    public func event(eventID: String, preferringSender: String = "") throws -> StoredEvent? {
        try pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT wire, status, reason FROM events WHERE event_id = ?
                            ORDER BY sender_key != ?, status != 0, \(RoomAuthorizer.orderColumns) LIMIT 1
                            """),
                    arguments: [eventID, preferringSender])
            else { return nil }
            return StoredEvent(
                event: try VerifiedEvent(storedWire: (row[0] as Data).bytes), status: EventStatus(rawValue: row[1]) ?? .rejected,
                reason: row[2])
        }
    }

    /// Final outcomes of events, by hash: stored ones by their status, held-back ones as such, others absent.
    public func outcomes(of events: [(eventID: String, hash: String)]) throws -> [String: IngestOutcome] {
        try pool.read { db in
            var result: [String: IngestOutcome] = [:]
            for slice in events.chunks(of: inListChunk) {
                let ids = slice.map(\.eventID)
                let chunk = slice.map(\.hash)
                let wanted = Set(chunk)
                for row in try Row.fetchAll(
                    db, sql: "SELECT hash, status, reason FROM events WHERE event_id IN (\(placeholders(ids.count)))", arguments: StatementArguments(ids))
                where wanted.contains(row[0] as String) {
                    let reason: String? = row[2]
                    result[row[0]] =
                        switch EventStatus(rawValue: row[1]) {
                        case .accepted?: .accepted
                        case .awaitingTarget?: .heldBack(reason ?? "waiting for the event it refers to")
                        default: .unauthorized(reason ?? "not authorized")
                        }
                }
                for row in try Row.fetchAll(
                    db, sql: "SELECT hash, waiting_for_seq, sender_key FROM pending_events WHERE hash IN (\(placeholders(chunk.count)))",
                    arguments: StatementArguments(chunk))
                {
                    let key: String = row[2]
                    result[row[0]] = .heldBack("waiting for seq \(row[1] as Int64) of device \(key.prefix(12))… (a gap in its chain)")
                }
            }
            return result
        }
    }

    /// Ids of the room's accepted events that `prefix` starts, each once, in event-id order, at most `limit`: for a
    /// user who gives the start of an id. `prefix` is the start of a whole id, or with `uuidOnly` the start of its last
    /// part, the UUID (which follows `ROOM::YYYYMMDDTHHMMSS.mmmZ::`).
    public func acceptedEventIDs(roomID: String, startingWith prefix: String, uuidOnly: Bool, limit: Int) throws -> [String] {
        try pool.read { db in
            let sql: String
            let arguments: StatementArguments
            if uuidOnly {
                sql = """
                    SELECT DISTINCT event_id FROM events WHERE room_id = ? AND status = 0 AND substr(event_id, ?, ?) = ?
                    ORDER BY event_id LIMIT ?
                    """
                arguments = [roomID, roomID.utf8.count + 25, prefix.utf8.count, prefix, limit]
            } else {
                // Event ids are ASCII: every id that starts with `prefix` sorts below `prefix` + DEL.
                sql = """
                    SELECT DISTINCT event_id FROM events WHERE event_id >= ? AND event_id < ? AND room_id = ? AND status = 0
                    ORDER BY event_id LIMIT ?
                    """
                arguments = [prefix, prefix + "\u{7F}", roomID, limit]
            }
            return try String.fetchAll(db, sql: sql, arguments: arguments)
        }
    }

    /// The full-text match for `text`: every word quoted, so that no FTS query syntax is interpreted; `nil` for no words.
    static func searchMatch(_ text: String) -> String? {
        let terms = text.split(whereSeparator: \.isWhitespace).map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
        return terms.isEmpty ? nil : terms.joined(separator: " ")
    }

    /// Full-text search over the current text of messages (after edits), newest first.
    /// - Parameter query: words that must all appear; FTS query syntax is not interpreted.
    public func search(_ query: String, roomID: String? = nil, limit: Int = 50) throws -> [SearchHit] {
        try catchUpSearchIndex()
        guard let match = EventStore.searchMatch(query) else { return [] }
        return try pool.read { db in
            var sql = """
                SELECT e.room_id, e.wire, e.id FROM message_search s JOIN events e ON e.id = s.rowid
                WHERE message_search MATCH ? AND e.status = 0 AND e.redacted = 0
                """
            var arguments: StatementArguments = [match]
            if let roomID {
                sql += " AND e.room_id = ?"
                arguments += [roomID]
            }
            sql += " ORDER BY e.timestamp_ms DESC, e.seq DESC LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap { row in
                let message = try EventStore.decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[2])
                let items = try EventStore.resolvedTimeline(db: db, items: [message], relations: try EventStore.relations(db: db, targets: [message.eventID]))
                return items.first.map { SearchHit(roomID: row[0], item: $0) }
            }
        }
    }

    /// The newest entries of the rejected-events log.
    public func rejectedEvents(limit: Int = 100) throws -> [RejectedEvent] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT received_ms, room_id, event_id, reason FROM rejected_events ORDER BY id DESC LIMIT ?"), arguments: [limit]
            )
            .map { RejectedEvent(receivedMs: $0[0], roomID: $0[1], eventID: $0[2], reason: $0[3]) }
        }
    }

    /// Every chained event carrying `eventID`, whatever its verdict: one, unless a device copied the id (§6.5).
    public func events(carrying eventID: String) throws -> [StoredEvent] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT wire, status, reason FROM events WHERE event_id = ? ORDER BY \(RoomAuthorizer.orderColumns)"),
                arguments: [eventID]
            ).map { StoredEvent(event: try VerifiedEvent(storedWire: ($0[0] as Data).bytes), status: EventStatus(rawValue: $0[1]) ?? .rejected, reason: $0[2]) }
        }
    }

    /// Pairs of different events of `roomID` that carry one event id (docs/PROTOCOL.md §6.5), as kept when the
    /// second was stored.
    public func eventIDCollisions(roomID: String) throws -> [EventIDCollision] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT event_id, first, second FROM event_id_collisions WHERE room_id = ? ORDER BY detected_ms, event_id"),
                arguments: [roomID]
            ).map { EventIDCollision(eventID: $0[0], first: ($0[1] as Data).bytes, second: ($0[2] as Data).bytes) }
        }
    }

    /// Fork proofs held for `roomID`.
    public func forkProofs(roomID: String) throws -> [ForkProof] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT first, second FROM forks WHERE room_id = ? ORDER BY seq"), arguments: [roomID])
                .map { ForkProof(first: ($0[0] as Data).bytes, second: ($0[1] as Data).bytes) }
        }
    }

    /// How many events are held back for a missing predecessor, per room.
    public func heldBackCount(roomID: String) throws -> Int {
        try pool.read { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM pending_events WHERE room_id = ?"), arguments: [roomID]) ?? 0
        }
    }
}

extension EventStore {
    /// How the room's current state would judge `event`, without storing anything. Lets a node refuse to sign
    /// and publish what every other node would reject.
    /// - Throws: ``StoreError`` `.unknownRoom` for an event (other than a create) of a room the store does not hold.
    public func preview(_ event: VerifiedEvent) throws -> Authorization {
        let roomID = event.event.roomID
        let held = try roomState(roomID: roomID)
        if held?.creation == nil, event.event.type != EventType.create {
            throw StoreError(.unknownRoom, "This node holds no room \(roomID).", remedy: "Create it, or import its events first.")
        }
        var state = held ?? RoomState(roomID: roomID)
        return try pool.read { db in
            switch parsedContent(of: event) {
            case .failure(let error): return .rejected("invalid content: \(error)")
            case .success(let content):
                return state.authorize(event, content: content, relations: SQLRelations(db: db))
            }
        }
    }
}

extension EventStore {
    /// Messages with a row id up to this are in the search index.
    static func searchIndexedUpTo(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT indexed_up_to FROM search_state")) ?? 0
    }

    /// (Re)indexes the current text of the message in row `messageRowID` (its newest accepted edit's, else its own),
    /// or removes it from the index if it is not an accepted, unredacted message.
    static func index(db: Database, messageRowID id: Int64) throws {
        try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT wire, status, redacted, event_id FROM events WHERE id = ? AND type IN ('m.room.message', 'm.room.encrypted')"),
                arguments: [id]),
            row[1] as Int == EventStatus.accepted.rawValue, !(row[2] as Bool)
        else { return }
        let message = try decryptedView(db: db, event: Event.parse((row[0] as Data).bytes), row: id)
        guard message.type == EventType.message else { return }
        let hasEdits =
            try Bool.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM events WHERE target_event_id = ?1 AND type = 'm.room.edit' AND status = 0)
                            OR EXISTS (SELECT 1 FROM plaintexts WHERE target_event_id = ?1 AND type = 'm.room.edit')
                        """),
                arguments: [row[3] as String]) ?? false
        let edits = hasEdits ? try relations(db: db, targets: [message.eventID]).filter { $0.type == EventType.edit } : []
        guard let body = Timeline.resolve(items: [message], relations: edits, targets: NoRelations()).first?.body else { return }
        try db.cachedStatement(sql: "INSERT INTO message_search (rowid, body) VALUES (?, ?)").execute(arguments: [id, body])
    }

    /// Indexes the messages stored since the last search. Ingest leaves this out of its hot path: tokenizing
    /// costs about as much as storing an event, and a search pays it only once per message.
    /// - Returns: how many messages were indexed.
    @discardableResult
    public func catchUpSearchIndex() throws -> Int {
        try pool.write { db in
            let from = try EventStore.searchIndexedUpTo(db)
            guard let upTo = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM events")), upTo > from else { return 0 }
            let ids = try Int64.fetchAll(
                db.cachedStatement(
                    sql: "SELECT id FROM events WHERE id > ? AND id <= ? AND type IN ('m.room.message', 'm.room.encrypted') AND status = 0 AND redacted = 0"),
                arguments: [from, upTo])
            for id in ids { try EventStore.index(db: db, messageRowID: id) }
            try db.execute(sql: "UPDATE search_state SET indexed_up_to = ?", arguments: [upTo])
            return ids.count
        }
    }
}

/// SQLite limits bound parameters per statement; IN lists are sent in chunks of this many.
let inListChunk = 500

/// `?,?,…,?` for an IN list of `count` values.
func placeholders(_ count: Int) -> String {
    Array(repeating: "?", count: count).joined(separator: ",")
}
