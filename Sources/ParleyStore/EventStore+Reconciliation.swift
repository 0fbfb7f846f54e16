import Foundation
import GRDB
import ParleyCore

extension EventStore {
    /// The room's chained events (accepted or not: every link of every chain) as set reconciliation sees them, stored
    /// after row `afterRow`; and the last row read, to continue from (docs/PROTOCOL.md §17.3).
    public func reconciliationItems(roomID: String, afterRow: Int64 = 0) throws -> (items: [ReconciliationItem], lastRow: Int64) {
        try pool.read { db in
            var items: [ReconciliationItem] = []
            var lastRow = afterRow
            let rows = try Row.fetchCursor(
                db.cachedStatement(sql: "SELECT id, timestamp_ms, hash FROM events WHERE room_id = ? AND id > ? ORDER BY id"), arguments: [roomID, afterRow])
            while let row = try rows.next() {
                lastRow = row[0]
                let timestamp: Int64 = row[1]
                guard timestamp >= 0, let hash = EventHash256(hex: row[2]) else { continue }
                items.append(ReconciliationItem(timestampMs: UInt64(timestamp), hash: hash))
            }
            return (items, lastRow)
        }
    }

    /// The room's events held back for a predecessor (at most `limit`), as reconciliation items: a node holds them,
    /// so a peer need not send them again; only what they wait for.
    public func heldBackItems(roomID: String, limit: Int = 10_000) throws -> [ReconciliationItem] {
        try pool.read { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT hash, wire FROM pending_events WHERE room_id = ? LIMIT ?"), arguments: [roomID, limit])
            return rows.compactMap { row in
                let wire: Data = row[1]
                guard let hash = EventHash256(hex: row[0]), case .object(let fields)? = try? JSONParser().parse(wire.bytes),
                    let timestamp = fields["timestamp_ms"]?.integerValue, timestamp >= 0
                else { return nil }
                return ReconciliationItem(timestampMs: UInt64(timestamp), hash: hash)
            }
        }
    }

    /// The wire bytes of the room's chained events among `items`, in the order given; items the store does not hold
    /// are left out.
    public func eventWires(roomID: String, items: [ReconciliationItem]) throws -> [[UInt8]] {
        try pool.read { db in
            let statement = try db.cachedStatement(sql: "SELECT wire FROM events WHERE room_id = ? AND timestamp_ms = ? AND hash = ?")
            return try items.compactMap { item in
                guard item.timestampMs <= UInt64(Int64.max) else { return nil }
                return try Data.fetchOne(statement, arguments: [roomID, Int64(item.timestampMs), item.hash.hex])?.bytes
            }
        }
    }
}
