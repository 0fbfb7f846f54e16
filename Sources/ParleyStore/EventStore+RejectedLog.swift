import Foundation
import GRDB
import ParleyCore

/// The rejected-events log is evidence for people, not a copy of every bad input: it is bounded. A trigger drops the
/// oldest entries once it holds ``EventStore/rejectedLogLimit`` (checked every 100 entries, so it may hold up to 100
/// more), and one ingest keeps at most ``EventStore/rejectedPerSenderPerBatch`` entries per device (and as many for
/// input that is not an event): a forked device's flood or a file of junk lines costs a few rows, not one per line.
extension EventStore {
    /// Most entries the rejected-events log keeps; the oldest go first.
    public static let rejectedLogLimit = 10_000
    /// Most entries one ingest call logs per sending device, and for lines that are not events.
    public static let rejectedPerSenderPerBatch = 100

    static func registerRejectedLogMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v8-rejected-log-limit") { db in
            // Row ids only grow (the newest row is never deleted), so "older than the newest N" is an id range.
            try db.execute(
                sql: """
                    CREATE TRIGGER rejected_events_limit AFTER INSERT ON rejected_events WHEN NEW.id % 100 = 0
                    BEGIN
                        DELETE FROM rejected_events WHERE id <= NEW.id - \(rejectedLogLimit);
                    END;
                    """)
        }
    }

    /// Adds an entry that is not one refused event: a summary of many ("2,000 more invalid lines of this input…"),
    /// or an input refused as a whole.
    public func logRejection(roomID: String?, reason: String, receivedMs: Int64) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT INTO rejected_events (received_ms, room_id, event_id, hash, reason, excerpt) VALUES (?, ?, NULL, NULL, ?, ?)",
                arguments: [receivedMs, roomID, reason, Data()])
        }
    }

    /// Empties the rejected-events log.
    /// - Returns: how many entries it held.
    @discardableResult
    public func clearRejectedEvents() throws -> Int {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM rejected_events")
            return db.changesCount
        }
    }
}
