import Foundation
import GRDB
import ParleyCore

/// Authorizes newly chained events of one room inside an ingest transaction and applies their effects
/// (search index, redactions). Agrees with ``RoomReplay`` on any set of events: in-order arrivals are judged
/// incrementally; an arrival older than what the room already authorized re-judges the room from that point.
struct RoomAuthorizer {
    let db: Database
    let store: EventStore
    let roomID: String
    var state: RoomState
    var last: EventOrder?
    var version: Int64
    var stateChanged = false
    /// Whether content was stripped, so the search index should drop the deleted terms for good.
    var strippedContent = false

    static let stateTypesSQL = "('m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.name', 'm.room.topic')"

    init(db: Database, store: EventStore, roomID: String) throws {
        self.db = db
        self.store = store
        self.roomID = roomID
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT last_timestamp_ms, last_seq, last_event_id, state_version FROM rooms WHERE room_id = ?"),
            arguments: [roomID])
        if let row {
            last = EventOrder(timestampMs: row[0], seq: row[1], eventID: row[2])
            version = row[3]
        } else {
            version = 0
        }
        if let cached = store.cache.get(roomID, version: version) {
            state = cached
        } else {
            state = try RoomAuthorizer.resolveState(db: db, roomID: roomID, before: nil)
        }
    }

    /// Replays the room's stored state events (those before `order`, or all that were authorized before this batch).
    static func resolveState(db: Database, roomID: String, before order: EventOrder?) throws -> RoomState {
        var sql = "SELECT wire FROM events WHERE room_id = ? AND type IN \(stateTypesSQL) AND status >= 0"
        var arguments: StatementArguments = [roomID]
        if let order {
            sql += " AND (timestamp_ms, seq, event_id) < (?, ?, ?)"
            arguments += [order.timestampMs, order.seq, order.eventID]
        }
        sql += " ORDER BY timestamp_ms, seq, event_id"
        var state = RoomState(roomID: roomID)
        let cursor = try Data.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let wire = try cursor.next() {
            let event = try VerifiedEvent(storedWire: wire.bytes)
            let content = try? parsedContent(of: event).get()
            _ = state.authorize(event, content: content, relations: NoRelations())
        }
        return state
    }

    func eventsAwaiting(targets: [String]) throws -> [VerifiedEvent] {
        var result: [VerifiedEvent] = []
        for chunk in stride(from: 0, to: targets.count, by: 500).map({ Array(targets[$0..<min(targets.count, $0 + 500)]) }) {
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let wires = try Data.fetchAll(
                db, sql: "SELECT wire FROM events WHERE status = 2 AND room_id = ? AND target_event_id IN (\(placeholders))",
                arguments: StatementArguments([roomID] + chunk))
            result += try wires.map { try VerifiedEvent(storedWire: $0.bytes) }
        }
        return result
    }

    /// Judges `events` (new or re-examined) and returns each one's verdict by hash.
    mutating func authorize(_ events: [VerifiedEvent]) throws -> [String: Authorization] {
        let ordered = events.sorted { EventOrder($0.event) < EventOrder($1.event) }
        guard let first = ordered.first else { return [:] }
        var verdicts: [String: Authorization] = [:]
        if let last, EventOrder(first.event) < last {
            // Something older than what was already judged: judge everything from there again.
            let from = EventOrder(first.event)
            state = try RoomAuthorizer.resolveState(db: db, roomID: roomID, before: from)
            stateChanged = true
            let cursor = try Row.fetchCursor(
                db.cachedStatement(sql: """
                    SELECT id, status, wire FROM events WHERE room_id = ? AND (timestamp_ms, seq, event_id) >= (?, ?, ?)
                    ORDER BY timestamp_ms, seq, event_id
                    """), arguments: [roomID, from.timestampMs, from.seq, from.eventID])
            var rows: [(Int64, Int, [UInt8])] = []
            while let row = try cursor.next() { rows.append((row[0], row[1], (row[2] as Data).bytes)) }
            for (id, status, wire) in rows {
                let event = try VerifiedEvent(storedWire: wire)
                verdicts[event.hash] = try judge(event, id: id, previousStatus: status)
            }
            if let newest = ordered.last { self.last = max(self.last ?? EventOrder(newest.event), EventOrder(newest.event)) }
        } else {
            for event in ordered {
                let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT id, status FROM events WHERE hash = ?"), arguments: [event.hash])!
                verdicts[event.hash] = try judge(event, id: row[0], previousStatus: row[1])
                last = EventOrder(event.event)
            }
        }
        return verdicts
    }

    mutating func judge(_ event: VerifiedEvent, id: Int64, previousStatus: Int) throws -> Authorization {
        let content: EventContent?
        let verdict: Authorization
        switch parsedContent(of: event) {
        case .success(let parsed):
            content = parsed
            verdict = state.authorize(event, content: parsed, relations: SQLRelations(db: db, before: EventOrder(event.event)))
        case .failure(let error):
            content = nil
            verdict = .rejected("invalid content: \(error)")
        }
        let status: EventStatus
        let reason: String?
        switch verdict {
        case .accepted: (status, reason) = (.accepted, nil)
        case .rejected(let why): (status, reason) = (.rejected, why)
        case .awaitingTarget(let target): (status, reason) = (.awaitingTarget, "waiting for \(target)")
        }
        if status.rawValue != previousStatus {
            try db.cachedStatement(sql: "UPDATE events SET status = ?, reason = ? WHERE id = ?").execute(arguments: [status.rawValue, reason, id])
        }
        let wasAccepted = previousStatus == EventStatus.accepted.rawValue
        if status == .accepted && EventType.isState(event.event.type) { stateChanged = true }
        if status == .accepted && !wasAccepted {
            try applyEffects(of: event, content: content, id: id)
        } else if status != .accepted && wasAccepted {
            try undoEffects(of: event, content: content, id: id)
        }
        return verdict
    }

    mutating func applyEffects(of event: VerifiedEvent, content: EventContent?, id: Int64) throws {
        switch content {
        case .message(_, let body)?:
            // Edits that arrived first are judged after their message and reindex it then.
            let redacted = try Bool.fetchOne(db.cachedStatement(sql: "SELECT redacted FROM events WHERE id = ?"), arguments: [id]) ?? false
            if !redacted {
                try db.cachedStatement(sql: "INSERT INTO message_search (rowid, body) VALUES (?, ?)").execute(arguments: [id, body])
            }
        case .edit(let target, _)?:
            if try isRedacted(eventID: target) { try strip(id: id) } else { try reindex(messageID: target) }
        case .redaction(let target, _)?:
            try redact(target)
        default:
            break
        }
    }

    func undoEffects(of event: VerifiedEvent, content: EventContent?, id: Int64) throws {
        switch content {
        case .message?:
            try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        case .edit(let target, _)?:
            try reindex(messageID: target)
        case .redaction(let target, _)?:
            // The content stays stripped: it is gone from this store. Clients may fetch it again elsewhere.
            try db.cachedStatement(sql: "UPDATE events SET redacted = 0 WHERE event_id = ?").execute(arguments: [target])
        default:
            break
        }
    }

    func isRedacted(eventID: String) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT redacted FROM events WHERE event_id = ?"), arguments: [eventID]) ?? false
    }

    /// Indexes the current text of a message (its newest edit's, else its own) under the message's row, so search
    /// finds exactly what the timeline shows.
    func reindex(messageID: String) throws {
        guard let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT id, wire, status, redacted FROM events WHERE event_id = ? AND type = 'm.room.message'"),
            arguments: [messageID])
        else { return }
        let id: Int64 = row[0]
        try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        guard row[2] as Int == EventStatus.accepted.rawValue, !(row[3] as Bool) else { return }
        let message = try Event.parse((row[1] as Data).bytes)
        let edits = try EventStore.relations(db: db, targets: [messageID]).filter { $0.type == EventType.edit }
        guard let body = Timeline.resolve(items: [message], relations: edits).first?.body else { return }
        try db.cachedStatement(sql: "INSERT INTO message_search (rowid, body) VALUES (?, ?)").execute(arguments: [id, body])
    }

    /// Marks `targetID` redacted and strips its content (and that of its edits, which repeat its text) from the
    /// store and the search index.
    mutating func redact(_ targetID: String) throws {
        try db.cachedStatement(sql: "UPDATE events SET redacted = 1 WHERE event_id = ?").execute(arguments: [targetID])
        let ids = try Int64.fetchAll(
            db.cachedStatement(sql: """
                SELECT id FROM events WHERE event_id = ?
                UNION ALL SELECT id FROM events WHERE target_event_id = ? AND type = 'm.room.edit'
                """), arguments: [targetID, targetID])
        for id in ids { try strip(id: id) }
    }

    mutating func strip(id: Int64) throws {
        guard let wire = try Data.fetchOne(db.cachedStatement(sql: "SELECT wire FROM events WHERE id = ?"), arguments: [id]) else { return }
        let event = try VerifiedEvent(storedWire: wire.bytes)
        if !event.event.isStripped {
            try db.cachedStatement(sql: "UPDATE events SET wire = ? WHERE id = ?").execute(arguments: [Data(event.stripped().wire), id])
        }
        try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        strippedContent = true
    }

    func finish() throws {
        guard let last else { return }
        let newVersion = stateChanged ? version + 1 : version
        try db.cachedStatement(sql: """
            INSERT INTO rooms (room_id, last_timestamp_ms, last_seq, last_event_id, state_version) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (room_id) DO UPDATE SET last_timestamp_ms = excluded.last_timestamp_ms, last_seq = excluded.last_seq,
                last_event_id = excluded.last_event_id, state_version = excluded.state_version
            """).execute(arguments: [roomID, last.timestampMs, last.seq, last.eventID, newVersion])
        store.cache.set(state, version: newVersion, for: roomID)
    }
}

/// State events need no relation lookups.
struct NoRelations: RelationLookup {
    func target(_ eventID: String) -> RelationTarget? { nil }
    func hasActiveReaction(sender: String, target: String, key: String) -> Bool { false }
}

/// Relation lookups against the events table.
struct SQLRelations: RelationLookup {
    let db: Database
    let before: EventOrder

    func target(_ eventID: String) -> RelationTarget? {
        guard let row = try? Row.fetchOne(db.cachedStatement(sql: "SELECT type, sender_id FROM events WHERE event_id = ?"), arguments: [eventID])
        else { return nil }
        return RelationTarget(type: row[0], senderID: row[1])
    }

    func hasActiveReaction(sender: String, target: String, key: String) -> Bool {
        let found = try? Bool.fetchOne(
            db.cachedStatement(sql: """
                SELECT 1 FROM events WHERE target_event_id = ? AND type = 'm.room.reaction' AND sender_id = ? AND relation_key = ?
                    AND status = 0 AND redacted = 0 AND (timestamp_ms, seq, event_id) < (?, ?, ?) LIMIT 1
                """), arguments: [target, sender, key, before.timestampMs, before.seq, before.eventID])
        return found ?? false
    }
}
