import GRDB

extension EventStore {
    /// Tables holding a room's rows by `room_id`, besides `events`.
    static let roomTables = [
        "pending_events", "forks", "rejected_events", "rooms", "plaintexts", "sealed_waiting", "room_keys", "psk_secrets", "transport_rooms",
        "transport_outbox", "transport_received", "transport_read_failures", "receipt_heads", "transport_send_failures", "room_preferences",
        "event_files", "block_deletions",
    ]

    /// Removes everything the store holds about `roomID`: its events with their search entries, plaintexts and key
    /// deliveries; held-back events, fork proofs and rejected events; its room keys and pre-shared secret; and its
    /// transports' records, outboxes and what they received. Nothing is published: to the other members this node falls silent.
    /// Freed pages are overwritten (`secure_delete`) and the write-ahead log is emptied, so keys and text are gone
    /// from the files.
    /// - Returns: how many events were removed.
    @discardableResult
    public func forgetRoom(roomID: String) throws -> Int {
        let removed = try pool.write { db in
            let rows = "SELECT id FROM events WHERE room_id = ?"
            try db.execute(sql: "DELETE FROM message_search WHERE rowid IN (\(rows))", arguments: [roomID])
            try db.execute(sql: "DELETE FROM key_deliveries WHERE event_row IN (\(rows))", arguments: [roomID])
            // Row ids of forgotten events are given out again: a change left behind would announce another event.
            try db.execute(sql: "DELETE FROM event_changes WHERE event_row IN (\(rows))", arguments: [roomID])
            for table in EventStore.roomTables { try db.execute(sql: "DELETE FROM \(table) WHERE room_id = ?", arguments: [roomID]) }
            try db.execute(sql: "DELETE FROM events WHERE room_id = ?", arguments: [roomID])
            return db.changesCount
        }
        cache.remove(roomID)
        try? pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        return removed
    }
}
