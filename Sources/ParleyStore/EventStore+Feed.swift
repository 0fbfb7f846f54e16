import Foundation
import GRDB
import ParleyCore

/// An accepted event as the node's activity feed announces it.
public struct StoredEventSummary: Sendable, Equatable {
    /// The event's row: it grows with every event stored, whichever process stored it.
    public var rowID: Int64
    public var roomID: String
    public var eventID: String
    /// The type, or for a sealed event this device opened, the type it holds.
    public var type: String
    /// The event an edit, reaction, redaction or receipt refers to.
    public var targetEventID: String?
    /// The user who signed it.
    public var senderID: String
}

extension EventStore {
    /// Events already stored that became accepted later (released when the event they refer to arrived, or judged
    /// again when an earlier event came late): the feed's watermark over rows has passed them, so each such change is
    /// a row here, for the feed to announce. The newest ``feedChangesKept`` are kept.
    static func registerFeedChangesMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v11-feed-changes") { db in
            try db.execute(sql: "CREATE TABLE event_changes (id INTEGER PRIMARY KEY, event_row INTEGER NOT NULL)")
        }
    }

    /// Changes kept for feeds that fell behind; a feed further behind than this misses the oldest (it re-reads a
    /// timeline anyway).
    static let feedChangesKept: Int64 = 10_000

    /// Where a feed has got to: the newest event row and the newest change it looked at.
    public struct FeedPosition: Sendable, Equatable {
        public var row: Int64
        public var change: Int64
    }

    /// The position of a feed that starts now: nothing stored so far is announced.
    public func newestFeedPosition() throws -> FeedPosition {
        try pool.read { db in
            FeedPosition(
                row: try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM events")) ?? 0,
                change: try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM event_changes")) ?? 0)
        }
    }

    /// Accepted events to announce after `position`, at most `limit` of each kind: those stored after its row, then those
    /// stored at or before it that became accepted since; and the position to start from next time. Read in one
    /// snapshot, so an event is announced once whichever way it became accepted.
    public func feedEvents(after position: FeedPosition, limit: Int) throws -> (events: [StoredEventSummary], upTo: FeedPosition) {
        try pool.read { db in
            let changes = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT c.id, e.id, e.room_id, e.event_id, COALESCE(p.type, e.type), COALESCE(e.target_event_id, p.target_event_id), e.status,
                          e.sender_id
                        FROM event_changes c JOIN events e ON e.id = c.event_row LEFT JOIN plaintexts p ON p.event_row = e.id
                        WHERE c.id > ? ORDER BY c.id LIMIT ?
                        """),
                arguments: [position.change, limit])
            // A change of a row after the old watermark is the row's own announcement's business.
            let changed = changes.filter { ($0[6] as Int) == 0 && ($0[1] as Int64) <= position.row }.map {
                StoredEventSummary(rowID: $0[1], roomID: $0[2], eventID: $0[3], type: $0[4], targetEventID: $0[5], senderID: $0[7])
            }
            let change: Int64 = changes.last?[0] ?? position.change
            // While changes remain, the rows' watermark stays where it is: a change read later must still be told from
            // a row announced with its final status.
            guard changes.count < limit else { return (changed, FeedPosition(row: position.row, change: change)) }
            let (stored, row) = try EventStore.acceptedEvents(db: db, afterRowID: position.row, limit: limit)
            return (changed + stored, FeedPosition(row: row, change: change))
        }
    }

    /// Accepted events stored after row `rowID`, oldest row first, at most `limit`; and the newest row looked at (past
    /// events that are stored but not accepted).
    static func acceptedEvents(db: Database, afterRowID rowID: Int64, limit: Int) throws -> (events: [StoredEventSummary], upTo: Int64) {
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT e.id, e.room_id, e.event_id, COALESCE(p.type, e.type), COALESCE(e.target_event_id, p.target_event_id), e.status, e.sender_id
                    FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id WHERE e.id > ? ORDER BY e.id LIMIT ?
                    """),
            arguments: [rowID, limit])
        let events = rows.filter { ($0[5] as Int) == 0 }.map {
            StoredEventSummary(rowID: $0[0], roomID: $0[1], eventID: $0[2], type: $0[3], targetEventID: $0[4], senderID: $0[6])
        }
        return (events, rows.last?[0] ?? rowID)
    }

    /// The ids of `senderKey`'s events of `roomID` with a seq in `seqs`, in seq order.
    public func eventIDs(roomID: String, senderKey: String, seqs: ClosedRange<Int64>) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(
                db.cachedStatement(sql: "SELECT event_id FROM events WHERE room_id = ? AND sender_key = ? AND seq BETWEEN ? AND ? ORDER BY seq"),
                arguments: [roomID, senderKey, seqs.lowerBound, seqs.upperBound])
        }
    }

    /// The messages of `roomID` by others than `userID` that come after the newest event `userID`'s read receipts
    /// (plain or sealed), or this node's read marker when its read receipts are off, reach (all of them when there is none), the newest `cap` of them: how many, and the current
    /// text (as edited) of those whose text holds `mentionText` (the caller decides which of those are mentions).
    /// Redacted messages do not count; sealed ones do once opened as messages, and while this device cannot open them.
    public func unreadMessages(roomID: String, userID: String, mentionText: String, cap: Int) throws -> (count: Int, mentioning: [String]) {
        try pool.read { db in
            let marker = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT t.timestamp_ms, t.seq, t.event_id, t.sender_key FROM events r
                            LEFT JOIN plaintexts p ON p.event_row = r.id
                            JOIN events t ON t.event_id = COALESCE(r.target_event_id, p.target_event_id) AND t.room_id = r.room_id AND t.status = 0
                        WHERE r.room_id = ? AND r.sender_id = ? AND r.status = 0 AND (
                            (r.type = 'm.receipt' AND r.relation_key = 'read')
                            OR (r.type = 'm.room.encrypted' AND p.type = 'm.receipt' AND json_extract(CAST(p.content AS TEXT), '$.receipt_type') = 'read'))
                        UNION ALL
                        SELECT t.timestamp_ms, t.seq, t.event_id, t.sender_key FROM room_preferences rp
                            JOIN events t ON t.event_id = rp.read_marker AND t.room_id = rp.room_id AND t.status = 0
                        WHERE rp.room_id = ?
                        ORDER BY 1 DESC, 2 DESC, 3 DESC, 4 DESC LIMIT 1
                        """), arguments: [roomID, userID, roomID])
            // The search index holds a message's current text; a message not indexed yet has its own.
            var sql = """
                SELECT CASE WHEN instr(b, ?) > 0 THEN b END FROM (SELECT COALESCE(
                        (SELECT s.body FROM message_search s WHERE s.rowid = e.id),
                        json_extract(CAST(e.wire AS TEXT), '$.content.body'),
                        (SELECT json_extract(CAST(p.content AS TEXT), '$.body') FROM plaintexts p WHERE p.event_row = e.id)) AS b
                    FROM events e WHERE e.room_id = ? AND e.status = 0 AND e.redacted = 0 AND e.sender_id != ?
                    AND (e.type = 'm.room.message' OR (e.type = 'm.room.encrypted' AND NOT EXISTS (
                        SELECT 1 FROM plaintexts p WHERE p.event_row = e.id AND p.type IS NOT NULL AND p.type != 'm.room.message')))
                """
            var arguments: StatementArguments = [mentionText, roomID, userID]
            if let marker {
                sql += " AND (e.timestamp_ms, e.seq, e.event_id, e.sender_key) > (?, ?, ?, ?)"
                arguments += [marker[0] as Int64, marker[1] as Int64, marker[2] as String, marker[3] as String]
            }
            sql += " ORDER BY e.timestamp_ms DESC, e.seq DESC, e.event_id DESC, e.sender_key DESC LIMIT ?)"
            arguments += [cap]
            var count = 0
            var mentioning: [String] = []
            let bodies = try String?.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
            while let body = try bodies.next() {
                count += 1
                if let body { mentioning.append(body) }
            }
            return (count, mentioning)
        }
    }
}
