import Foundation
import GRDB
import ParleyCore
import ParleySync

extension EventStore {
    /// The newest seq the store holds of each device chain of `roomID` (chained events, accepted or not), by signing
    /// key: what a peer compares with its own to find what either side lacks.
    public func chainHeads(roomID: String) throws -> [String: Int64] {
        try pool.read { db in
            var heads: [String: Int64] = [:]
            let rows = try Row.fetchCursor(
                db.cachedStatement(sql: "SELECT sender_key, MAX(seq) FROM events WHERE room_id = ? GROUP BY sender_key"), arguments: [roomID])
            while let row = try rows.next() { heads[row[0]] = row[1] }
            return heads
        }
    }

    /// The chained events of `roomID` that come after `heads` (per signing key, the newest seq the
    /// asker holds; chains it does not name, from their start), in the room's order, at most `limit`; and the heads
    /// to ask from next time (`nil` when nothing is left).
    public func chainEvents(roomID: String, after heads: [String: Int64], limit: Int) throws -> (events: [ChainedWire], next: [String: Int64]?) {
        try pool.read { db in
            let held = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT sender_key, MAX(seq) FROM events WHERE room_id = ? GROUP BY sender_key"), arguments: [roomID])
            // Per lacking chain, its first `limit` missing events; the room's first `limit` of all those is exact, since
            // each chain's events come in seq order in the room's order too (§8.1 orders by time, and a chain's times
            // never go back).
            var candidates: [(order: EventOrder, sender: String, seq: Int64, row: Int64)] = []
            for row in held {
                let sender: String = row[0]
                let newest: Int64 = row[1]
                let from = heads[sender] ?? 0
                guard newest > from else { continue }
                // Positions first, without the wire bytes: most candidates of a busy room are left for the next page.
                let rows = try Row.fetchAll(
                    db.cachedStatement(
                        sql: """
                            SELECT timestamp_ms, seq, event_id, sender_key, id FROM events
                            WHERE room_id = ? AND sender_key = ? AND seq > ? ORDER BY seq LIMIT ?
                            """),
                    arguments: [roomID, sender, from, limit])
                for row in rows {
                    candidates.append((EventOrder(timestampMs: row[0], seq: row[1], eventID: row[2], senderKey: row[3]), sender, row[1], row[4]))
                }
            }
            guard !candidates.isEmpty else { return ([], nil) }
            candidates.sort { $0.order < $1.order }
            let taken = candidates.prefix(limit)
            var next = heads
            for candidate in taken { next[candidate.sender] = max(next[candidate.sender] ?? 0, candidate.seq) }
            let isComplete = taken.count == candidates.count && held.allSatisfy { row in (next[row[0] as String] ?? 0) >= (row[1] as Int64) }
            let wireStatement = try db.cachedStatement(sql: "SELECT wire FROM events WHERE id = ?")
            var events: [ChainedWire] = []
            events.reserveCapacity(taken.count)
            for candidate in taken {
                guard let wire = try Data.fetchOne(wireStatement, arguments: [candidate.row]) else { continue }
                events.append(ChainedWire(senderKey: candidate.sender, seq: candidate.seq, wire: wire.bytes))
            }
            return (events, isComplete ? nil : next)
        }
    }

    /// A page of `roomID`'s history: the wire bytes of the `limit` chained events before `beforeEventID` (the newest
    /// when `nil`) in the room's order, oldest first, and whether older ones remain.
    /// - Throws: ``StoreError`` `.unknownEvent` when `beforeEventID` is not an event of the room.
    public func historyPage(roomID: String, before beforeEventID: String?, limit: Int) throws -> (wires: [[UInt8]], hasMore: Bool) {
        try pool.read { db in
            var sql = "SELECT wire FROM events WHERE room_id = ?"
            var arguments: StatementArguments = [roomID]
            if let beforeEventID {
                guard
                    let row = try Row.fetchOne(
                        db.cachedStatement(sql: "SELECT timestamp_ms, seq, event_id, sender_key FROM events WHERE room_id = ? AND event_id = ? LIMIT 1"),
                        arguments: [roomID, beforeEventID])
                else { throw StoreError(.unknownEvent, "The room holds no event \(beforeEventID).") }
                sql += " AND (\(RoomAuthorizer.orderColumns)) < (?, ?, ?, ?)"
                arguments += [row[0] as Int64, row[1] as Int64, row[2] as String, row[3] as String]
            }
            sql += " ORDER BY \(RoomAuthorizer.orderColumns.split(separator: ",").map { "\($0) DESC" }.joined(separator: ",")) LIMIT ?"
            arguments += [limit + 1]
            let wires = try Data.fetchAll(db.cachedStatement(sql: sql), arguments: arguments).map(\.bytes)
            return (Array(wires.prefix(limit).reversed()), wires.count > limit)
        }
    }
}
