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
}

extension EventStore {
    /// Accepted events stored after row `rowID`, oldest row first, at most `limit`; and the newest row looked at, which
    /// is where the next call starts (past events that are stored but not accepted).
    public func acceptedEvents(afterRowID rowID: Int64, limit: Int) throws -> (events: [StoredEventSummary], upTo: Int64) {
        try pool.read { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT e.id, e.room_id, e.event_id, COALESCE(p.type, e.type), COALESCE(e.target_event_id, p.target_event_id), e.status
                        FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id WHERE e.id > ? ORDER BY e.id LIMIT ?
                        """),
                arguments: [rowID, limit])
            let events = rows.filter { ($0[5] as Int) == 0 }.map {
                StoredEventSummary(rowID: $0[0], roomID: $0[1], eventID: $0[2], type: $0[3], targetEventID: $0[4])
            }
            return (events, rows.last?[0] ?? rowID)
        }
    }

    /// The ids of `senderKey`'s events of `roomID` with a seq in `seqs`, in seq order.
    public func eventIDs(roomID: String, senderKey: String, seqs: ClosedRange<Int64>) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(
                db.cachedStatement(sql: "SELECT event_id FROM events WHERE room_id = ? AND sender_key = ? AND seq BETWEEN ? AND ? ORDER BY seq"),
                arguments: [roomID, senderKey, seqs.lowerBound, seqs.upperBound])
        }
    }

    /// How many messages of `roomID` by others than `userID` come after the newest event `userID`'s read receipts
    /// (plain or sealed) reach (all of them when there is none), counting up to `cap`. Redacted messages do not count; sealed ones do
    /// once opened as messages, and while this device cannot open them.
    public func unreadCount(roomID: String, userID: String, cap: Int) throws -> Int {
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
                        ORDER BY t.timestamp_ms DESC, t.seq DESC, t.event_id DESC, t.sender_key DESC LIMIT 1
                        """), arguments: [roomID, userID])
            var sql = """
                SELECT COUNT(*) FROM (SELECT 1 FROM events e WHERE e.room_id = ? AND e.status = 0 AND e.redacted = 0 AND e.sender_id != ?
                    AND (e.type = 'm.room.message' OR (e.type = 'm.room.encrypted' AND NOT EXISTS (
                        SELECT 1 FROM plaintexts p WHERE p.event_row = e.id AND p.type IS NOT NULL AND p.type != 'm.room.message')))
                """
            var arguments: StatementArguments = [roomID, userID]
            if let marker {
                sql += " AND (e.timestamp_ms, e.seq, e.event_id, e.sender_key) > (?, ?, ?, ?)"
                arguments += [marker[0] as Int64, marker[1] as Int64, marker[2] as String, marker[3] as String]
            }
            sql += " LIMIT ?)"
            arguments += [cap]
            return try Int.fetchOne(db.cachedStatement(sql: sql), arguments: arguments) ?? 0
        }
    }
}
