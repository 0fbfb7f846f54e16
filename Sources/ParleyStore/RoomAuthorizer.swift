import Foundation
import GRDB
import ParleyCore

/// Authorizes newly chained events of one room inside an ingest transaction and applies their effects
/// (redactions, search index upkeep). Agrees with ``RoomReplay`` on any set of events: arrivals in order are judged
/// one by one against the room's current state; an arrival older than what the room already judged makes the room
/// be judged again from that point.
struct RoomAuthorizer {
    let db: Database
    let store: EventStore
    let roomID: String
    var state: RoomState
    /// The newest event judged so far.
    var last: EventOrder?
    var version: Int64
    var stateChanged = false
    /// The newest event row committed before this batch.
    let committedUpTo: Int64
    /// Events committed before this batch that it made accepted (rows of `event_changes` written).
    var changesRecorded: Int64 = 0
    /// Whether content was stripped, so the search index should drop the deleted terms for good.
    var strippedContent = false
    /// Whether the room has events waiting for a relation target.
    var hasAwaiting: Bool
    /// Messages up to this row id are in the search index; later ones are indexed on the next search.
    let searchIndexedUpTo: Int64
    /// The room's founding create, pinned when this node first accepted one.
    var pinnedCreateHash: String?
    /// Event ids that an event stored in this batch shares with an earlier one: which events their redactions hide
    /// is worked out again when the batch finishes.
    var collidedIDs: Set<String> = []

    /// `type` is one of the replayed types, spelled as comparisons joined by OR rather than an IN list: in the
    /// `events_replayed` index's WHERE, an IN list made SQLite build a temporary table on every INSERT into
    /// `events` (a quarter of the store's instructions). Queries must spell it the same way to use the index.
    static let replayedTypesCondition = "(" + EventType.replayedTypes.sorted().map { "type = '\($0)'" }.joined(separator: " OR ") + ")"

    init(db: Database, store: EventStore, roomID: String, committedUpTo: Int64) throws {
        self.db = db
        self.committedUpTo = committedUpTo
        self.store = store
        self.roomID = roomID
        let row = try Row.fetchOne(
            db.cachedStatement(
                sql: "SELECT last_timestamp_ms, last_seq, last_event_id, state_version, create_hash, last_sender_key FROM rooms WHERE room_id = ?"),
            arguments: [roomID])
        if let row {
            last = EventOrder(timestampMs: row[0], seq: row[1], eventID: row[2], senderKey: row[5])
            version = row[3]
            pinnedCreateHash = row[4]
        } else {
            version = 0
        }
        if let cached = store.cache.get(roomID, version: version) {
            state = cached
        } else {
            state = try RoomAuthorizer.resolveState(db: db, roomID: roomID, before: nil, pinnedCreateHash: pinnedCreateHash)
        }
        hasAwaiting =
            try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ? AND status = 2)"), arguments: [roomID]) ?? false
        searchIndexedUpTo = try EventStore.searchIndexedUpTo(db)
    }

    /// The total order (§8.1) in SQL, for ORDER BY and row-value comparisons with ``orderArguments(_:)``.
    static let orderColumns = "timestamp_ms, seq, event_id, sender_key"

    static func orderArguments(_ order: EventOrder) -> StatementArguments {
        [order.timestampMs, order.seq, order.eventID, order.senderKey]
    }

    /// The query of a room's replayed events in order, all of them or (`bounded`) those before a given order; its
    /// arguments are the room id, then ``orderArguments(_:)`` of the bound.
    static func replaySQL(bounded: Bool) -> String {
        "SELECT wire FROM events WHERE room_id = ? AND \(replayedTypesCondition) AND status >= 0"
            + (bounded ? " AND (\(orderColumns)) < (?, ?, ?, ?)" : "") + " ORDER BY \(orderColumns)"
    }

    /// Replays the room's stored state events (those before `order`, or all that were authorized before this batch).
    static func resolveState(db: Database, roomID: String, before order: EventOrder?, pinnedCreateHash: String?) throws -> RoomState {
        var arguments: StatementArguments = [roomID]
        if let order { arguments += orderArguments(order) }
        let sql = replaySQL(bounded: order != nil)
        var state = RoomState(roomID: roomID, pinnedCreateHash: pinnedCreateHash)
        let cursor = try Data.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let wire = try cursor.next() {
            let event = try VerifiedEvent(storedWire: wire.bytes)
            // A state event with invalid content is rejected, exactly as RoomReplay does.
            switch parsedContent(of: event) {
            case .success(let content): _ = state.authorize(event, content: content, relations: NoRelations())
            case .failure: break
            }
        }
        return state
    }

    func eventsAwaiting(targets: [String]) throws -> [VerifiedEvent] {
        var result: [VerifiedEvent] = []
        for chunk in targets.chunks(of: inListChunk) {
            let wires = try Data.fetchAll(
                db, sql: "SELECT wire FROM events WHERE status = 2 AND room_id = ? AND target_event_id IN (\(placeholders(chunk.count)))",
                arguments: StatementArguments([roomID] + Array(chunk)))
            result += try wires.map { try VerifiedEvent(storedWire: $0.bytes) }
        }
        return result
    }

    /// Every event of the room that names `eventID` as its relation target, whatever its verdict.
    func events(referringTo eventID: String) throws -> [VerifiedEvent] {
        try Data.fetchAll(
            db.cachedStatement(sql: "SELECT wire FROM events WHERE target_event_id = ? AND room_id = ?"), arguments: [eventID, roomID]
        ).map { try VerifiedEvent(storedWire: $0.bytes) }
    }

    func isAfterEverythingJudged(_ event: VerifiedEvent) -> Bool {
        guard let last else { return true }
        return last < EventOrder(event.event)
    }

    /// A verdict on a new event and the state it leads to, not applied yet.
    struct Judgement {
        var verdict: Authorization
        var content: EventContent?
        /// The state after the event, for a type that can change it (``EventType/isReplayed(_:)``); otherwise `nil`,
        /// the state being the same as before.
        var state: RoomState?
        /// For an accepted redaction: what it hides among the events carrying the id it names.
        var scope: RedactionScope?
    }

    /// Judges an event that comes after everything judged so far, without changing anything.
    mutating func judgeNew(_ event: VerifiedEvent) -> Judgement {
        switch parsedContent(of: event) {
        case .success(let content):
            guard EventType.isReplayed(event.event.type) else {
                // Only replayed types change the state, so the others are judged against it in place: a copy of the
                // state to change retained and released each of its members twice per event.
                #if DEBUG
                    let before = state
                    defer { assert(state == before, "a \(event.event.type) event changed the room state") }
                #endif
                let verdict = state.authorize(event, content: content, relations: SQLRelations(db: db))
                return Judgement(verdict: verdict, content: content, state: nil, scope: scope(of: event, content: content, verdict: verdict))
            }
            var next = state
            let verdict = next.authorize(event, content: content, relations: SQLRelations(db: db))
            return Judgement(verdict: verdict, content: content, state: next)
        case .failure(let error):
            return Judgement(verdict: .rejected("invalid content: \(error)"), content: nil, state: nil)
        }
    }

    mutating func commit(_ judgement: Judgement, event: VerifiedEvent) {
        if let next = judgement.state { state = next }
        if pinnedCreateHash == nil, let creation = state.creation {
            // The first create this node accepts founds the room for good: a create arriving later is refused even
            // if it claims an earlier time.
            pinnedCreateHash = creation.hash
            state.pinCreate()
        }
        last = EventOrder(event.event)
        if judgement.verdict == .accepted && EventType.isReplayed(event.event.type) { stateChanged = true }
    }

    static func status(of verdict: Authorization) -> (EventStatus, String?) {
        switch verdict {
        case .accepted: (.accepted, nil)
        case .rejected(let why): (.rejected, why)
        case .awaitingTarget(let target): (.awaitingTarget, "waiting for \(target)")
        }
    }

    /// Judges everything in the room from `from` on again, from the state before it, updating what changed.
    /// - Parameter known: events already in memory, by row id (those the current batch stored). One whose stored
    ///   bytes are still what it was stored with (not stripped since) is used as it is rather than parsed and hashed
    ///   again: that was a quarter of the store's instructions when every batch had events arriving out of order.
    mutating func rejudge(from: EventOrder, known: [Int64: VerifiedEvent]) throws -> [String: Authorization] {
        state = try RoomAuthorizer.resolveState(db: db, roomID: roomID, before: from, pinnedCreateHash: pinnedCreateHash)
        stateChanged = true
        let cursor = try Row.fetchCursor(
            db.cachedStatement(
                sql: """
                    SELECT id, status, wire FROM events WHERE room_id = ? AND (\(RoomAuthorizer.orderColumns)) >= (?, ?, ?, ?)
                    ORDER BY \(RoomAuthorizer.orderColumns)
                    """), arguments: [roomID] + RoomAuthorizer.orderArguments(from))
        var rows: [(id: Int64, status: Int, event: VerifiedEvent?, wire: Data)] = []
        while let row = try cursor.next() {
            let id: Int64 = row[0]
            let wire: Data = row[2]
            let unchanged = known[id].flatMap { event in
                !wire.isEmpty && event.wire.count == wire.count
                    && event.wire.withUnsafeBytes { stored in wire.withUnsafeBytes { now in memcmp(stored.baseAddress!, now.baseAddress!, now.count) == 0 } }
                    ? event : nil
            }
            rows.append((id, row[1], unchanged, unchanged == nil ? wire : Data()))
        }
        var verdicts: [String: Authorization] = [:]
        verdicts.reserveCapacity(rows.count)
        for row in rows {
            let id = row.id
            let status = row.status
            let event = try row.event ?? VerifiedEvent(storedWire: row.wire.bytes)
            verdicts[event.hash] = try judge(event, id: id, previousStatus: status)
            last = max(last ?? EventOrder(event.event), EventOrder(event.event))
        }
        hasAwaiting =
            try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ? AND status = 2)"), arguments: [roomID]) ?? false
        if pinnedCreateHash == nil, let creation = state.creation {
            pinnedCreateHash = creation.hash
            state.pinCreate()
        }
        return verdicts
    }

    /// What an accepted redaction hides, judged against the state before it (as its verdict was).
    func scope(of event: VerifiedEvent, content: EventContent?, verdict: Authorization) -> RedactionScope? {
        guard verdict == .accepted, case .redaction(let target, _)? = content else { return nil }
        return state.redactionScope(of: event.event, candidates: SQLRelations(db: db).targets(target))
    }

    mutating func judge(_ event: VerifiedEvent, id: Int64, previousStatus: Int) throws -> Authorization {
        let content: EventContent?
        let verdict: Authorization
        switch parsedContent(of: event) {
        case .success(let parsed):
            content = parsed
            verdict = state.authorize(event, content: parsed, relations: SQLRelations(db: db))
        case .failure(let error):
            content = nil
            verdict = .rejected("invalid content: \(error)")
        }
        let (status, reason) = RoomAuthorizer.status(of: verdict)
        if status.rawValue != previousStatus {
            try db.cachedStatement(sql: "UPDATE events SET status = ?, reason = ? WHERE id = ?").execute(arguments: [status.rawValue, reason, id])
            if status == .accepted && id <= committedUpTo {
                // Committed earlier and accepted only now: the node's feed may have passed its row, so it learns of it
                // here. (A row of this batch is announced with its final status when the feed reaches it.)
                try db.cachedStatement(sql: "INSERT INTO event_changes (event_row) VALUES (?)").execute(arguments: [id])
                changesRecorded += 1
            }
        }
        if case .redaction(let target, _)? = content {
            // What it hides may change without its verdict changing (another event now carries the id, or a key
            // binding before it changed): recorded again, and the targets' flags worked out again, every time.
            try db.cachedStatement(sql: "UPDATE events SET relation_key = ? WHERE id = ?")
                .execute(arguments: [scope(of: event, content: content, verdict: verdict)?.text, id])
            try refreshRedactions(of: target)
            return verdict
        }
        let wasAccepted = previousStatus == EventStatus.accepted.rawValue
        if status == .accepted && EventType.isReplayed(event.event.type) { stateChanged = true }
        if status == .accepted && !wasAccepted {
            try applyEffects(of: event, content: content, id: id)
        } else if status != .accepted && wasAccepted {
            try undoEffects(of: event, content: content, id: id)
        }
        return verdict
    }

    mutating func applyEffects(of event: VerifiedEvent, content: EventContent?, id: Int64) throws {
        switch content {
        case .message?:
            // New messages are indexed in bulk before the next search; one judged again is reindexed now.
            if id <= searchIndexedUpTo { try reindex(messageID: event.event.eventID) }
        case .edit(let target, _)?:
            if try isRedacted(messageID: target, sentBy: event.event.senderID) { try strip(id: id) } else { try reindex(messageID: target) }
        case .redaction(let target, _)?:
            try refreshRedactions(of: target)
        default:
            break
        }
    }

    mutating func undoEffects(of event: VerifiedEvent, content: EventContent?, id: Int64) throws {
        switch content {
        case .message?:
            try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        case .edit(let target, _)?:
            try reindex(messageID: target)
        default:
            break
        }
    }

    /// Whether the message `messageID` that `sender` sent (the only one their edit can apply to) is redacted.
    func isRedacted(messageID: String, sentBy sender: String) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ? AND sender_id = ? AND redacted = 1)"),
            arguments: [messageID, sender]) ?? false
    }

    /// Indexes the current text of already indexed messages with this id again (after an edit or a change of verdict).
    func reindex(messageID: String) throws {
        for id in try EventStore.messageRows(db: db, eventID: messageID) where id <= searchIndexedUpTo { try EventStore.index(db: db, messageRowID: id) }
    }

    /// Marks redacted exactly the events with id `targetID` that an accepted redaction hides (§8.5: when several
    /// devices' events share the id, a redaction hides only some of them), and strips the content of those newly
    /// hidden and of their edits, which repeat their text, from the store and the search index. An event no longer
    /// hidden is unmarked; its content stays stripped.
    mutating func refreshRedactions(of targetID: String) throws {
        let rows = try Row.fetchAll(
            db.cachedStatement(sql: "SELECT id, type, sender_id, sender_key, redacted FROM events WHERE event_id = ? AND room_id = ?"),
            arguments: [targetID, roomID])
        guard !rows.isEmpty else { return }
        let scopes = Set(
            try String?.fetchAll(
                db.cachedStatement(
                    sql: "SELECT DISTINCT relation_key FROM events WHERE target_event_id = ? AND room_id = ? AND type = 'm.room.redaction' AND status = 0"),
                arguments: [targetID, roomID]
            ).compactMap { RedactionScope(text: $0) })
        for row in rows {
            let id: Int64 = row[0]
            let candidate = RelationTarget(type: row[1], senderID: row[2], senderKey: row[3])
            let hidden = scopes.contains { $0.covers(candidate) }
            guard hidden != (row[4] as Bool) else { continue }
            try db.cachedStatement(sql: "UPDATE events SET redacted = ? WHERE id = ?").execute(arguments: [hidden, id])
            if hidden { try strip(redacted: id, eventID: targetID, type: candidate.type, sender: candidate.senderID) }
        }
    }

    /// Strips a newly redacted event and the accepted edits its sender made of it, and reindexes the message an
    /// edit that was redacted had changed.
    mutating func strip(redacted id: Int64, eventID: String, type: String, sender: String) throws {
        let edits = try Int64.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT id FROM events WHERE target_event_id = ?1 AND type = 'm.room.edit' AND status = 0 AND sender_id = ?2
                    UNION ALL SELECT p.event_row FROM plaintexts p JOIN events e ON e.id = p.event_row
                        WHERE p.target_event_id = ?1 AND p.type = 'm.room.edit' AND e.sender_id = ?2
                    """), arguments: [eventID, sender])
        // A redacted edit may have been the message's current text: the index must fall back to the one before.
        let editedMessage = try String.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT target_event_id FROM events WHERE id = ?1 AND type = 'm.room.edit'
                    UNION ALL SELECT target_event_id FROM plaintexts WHERE event_row = ?1 AND type = 'm.room.edit'
                    """), arguments: [id])
        for row in [id] + edits { try strip(id: row) }
        if let message = editedMessage { try reindex(messageID: message) }
    }

    mutating func strip(id: Int64) throws {
        guard let wire = try Data.fetchOne(db.cachedStatement(sql: "SELECT wire FROM events WHERE id = ?"), arguments: [id]) else { return }
        let event = try VerifiedEvent(storedWire: wire.bytes)
        if !event.event.isStripped {
            try db.cachedStatement(sql: "UPDATE events SET wire = ? WHERE id = ?").execute(arguments: [Data(event.stripped().wire), id])
        }
        try db.cachedStatement(sql: "DELETE FROM message_search WHERE rowid = ?").execute(arguments: [id])
        // The opened content goes; its type and target stay, so that a redacted sealed reaction or edit is still known
        // for one, and not shown as a deleted message.
        try db.cachedStatement(sql: "DELETE FROM plaintexts WHERE event_row = ? AND type IS NULL").execute(arguments: [id])
        try db.cachedStatement(sql: "UPDATE plaintexts SET content = X'7B7D' WHERE event_row = ?").execute(arguments: [id])
        strippedContent = true
    }

    /// Records the room's progress; returns the new state version, for the cache once the transaction commits.
    func finish() throws -> Int64? {
        guard let last else { return nil }
        let newVersion = stateChanged ? version + 1 : version
        try db.cachedStatement(
            sql: """
                INSERT INTO rooms (room_id, last_timestamp_ms, last_seq, last_event_id, last_sender_key, state_version) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (room_id) DO UPDATE SET last_timestamp_ms = excluded.last_timestamp_ms, last_seq = excluded.last_seq,
                    last_event_id = excluded.last_event_id, last_sender_key = excluded.last_sender_key, state_version = excluded.state_version
                """
        ).execute(arguments: [roomID, last.timestampMs, last.seq, last.eventID, last.senderKey, newVersion])
        if let pinnedCreateHash {
            try db.cachedStatement(sql: "UPDATE rooms SET create_hash = ? WHERE room_id = ? AND create_hash IS NULL")
                .execute(arguments: [pinnedCreateHash, roomID])
        }
        return newVersion
    }
}

/// State events need no relation lookups.
struct NoRelations: RelationLookup {
    func targets(_ eventID: String) -> [RelationTarget] { [] }
    func redactionScope(of redaction: Event) -> RedactionScope? { nil }
}

/// Relation lookups against the events table: every chained event carrying the id.
struct SQLRelations: RelationLookup {
    let db: Database

    func targets(_ eventID: String) -> [RelationTarget] {
        let rows = (try? Row.fetchAll(db.cachedStatement(sql: "SELECT type, sender_id, sender_key FROM events WHERE event_id = ?"), arguments: [eventID])) ?? []
        return rows.map { RelationTarget(type: $0[0], senderID: $0[1], senderKey: $0[2]) }
    }

    func redactionScope(of redaction: Event) -> RedactionScope? {
        let text = try? String.fetchOne(
            db.cachedStatement(
                sql: "SELECT relation_key FROM events WHERE room_id = ? AND sender_key = ? AND seq = ? AND type = 'm.room.redaction' AND status = 0"),
            arguments: [redaction.roomID, redaction.senderKey, redaction.seq])
        return RedactionScope(text: text ?? nil)
    }
}
