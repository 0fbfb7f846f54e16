import Foundation
import GRDB
import ParleyCore
import ParleySync

// What transports keep in the store: per (transport, room), where the room is reached, the transport's opaque cursor,
// its outbox (runs of this device's events it took to send, until it confirms them; the highest confirmed seq is the
// outbox watermark), what it received, and what it failed to read for a while. No table knows one transport.

extension EventStore {
    static func registerBucketReadFailureMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v7-bucket-read-failures") { db in
            try db.execute(
                sql: """
                    CREATE TABLE bucket_read_failures (
                        room_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        first_ms INTEGER NOT NULL,
                        next_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, key)
                    )
                    """)
        }
    }

    static func registerBucketMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-bucket") { db in
            try db.execute(
                sql: """
                    CREATE TABLE bucket_rooms (
                        room_id TEXT PRIMARY KEY,
                        bucket_url TEXT NOT NULL,
                        creator_fingerprint TEXT NOT NULL,
                        logs_cursor_ms INTEGER NOT NULL DEFAULT 0,
                        hints_cursor_ms INTEGER NOT NULL DEFAULT 0,
                        full_listing_ms INTEGER NOT NULL DEFAULT 0
                    );
                    CREATE TABLE bucket_uploads (
                        id INTEGER PRIMARY KEY,
                        room_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        first_seq INTEGER NOT NULL,
                        last_seq INTEGER NOT NULL,
                        first_timestamp_ms INTEGER NOT NULL,
                        last_timestamp_ms INTEGER NOT NULL,
                        content BLOB,
                        created_ms INTEGER NOT NULL,
                        confirmed_ms INTEGER,
                        UNIQUE (room_id, key)
                    );
                    CREATE INDEX bucket_uploads_room ON bucket_uploads (room_id, last_seq);
                    CREATE TABLE bucket_files (
                        room_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        events INTEGER NOT NULL,
                        problem TEXT,
                        seen_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, key)
                    ) WITHOUT ROWID;
                    """)
        }
    }

    /// Moves the bucket's tables, the first transport's, into the tables every transport shares.
    static func registerTransportTablesMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v10-transport-tables") { db in
            try db.execute(
                sql: """
                    CREATE TABLE transport_rooms (
                        transport TEXT NOT NULL,
                        room_id TEXT NOT NULL,
                        location TEXT NOT NULL,
                        creator_fingerprint TEXT NOT NULL,
                        cursor BLOB NOT NULL DEFAULT x'',
                        PRIMARY KEY (transport, room_id)
                    );
                    CREATE TABLE transport_outbox (
                        id INTEGER PRIMARY KEY,
                        transport TEXT NOT NULL,
                        room_id TEXT NOT NULL,
                        name TEXT NOT NULL,
                        first_seq INTEGER NOT NULL,
                        last_seq INTEGER NOT NULL,
                        first_timestamp_ms INTEGER NOT NULL,
                        last_timestamp_ms INTEGER NOT NULL,
                        content BLOB,
                        created_ms INTEGER NOT NULL,
                        confirmed_ms INTEGER,
                        UNIQUE (transport, room_id, name)
                    );
                    CREATE INDEX transport_outbox_room ON transport_outbox (transport, room_id, last_seq);
                    CREATE TABLE transport_received (
                        transport TEXT NOT NULL,
                        room_id TEXT NOT NULL,
                        name TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        events INTEGER NOT NULL,
                        problem TEXT,
                        seen_ms INTEGER NOT NULL,
                        PRIMARY KEY (transport, room_id, name)
                    ) WITHOUT ROWID;
                    CREATE TABLE transport_read_failures (
                        transport TEXT NOT NULL,
                        room_id TEXT NOT NULL,
                        name TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        first_ms INTEGER NOT NULL,
                        next_ms INTEGER NOT NULL,
                        PRIMARY KEY (transport, room_id, name)
                    );
                    INSERT INTO transport_rooms (transport, room_id, location, creator_fingerprint, cursor)
                        SELECT 'bucket', room_id, bucket_url, creator_fingerprint,
                            CAST('{"full_listing_ms":' || full_listing_ms || ',"hints_ms":' || hints_cursor_ms || ',"logs_ms":' || logs_cursor_ms || '}' AS BLOB)
                        FROM bucket_rooms;
                    INSERT INTO transport_outbox (id, transport, room_id, name, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content,
                            created_ms, confirmed_ms)
                        SELECT id, 'bucket', room_id, key, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content, created_ms, confirmed_ms
                        FROM bucket_uploads;
                    INSERT INTO transport_received (transport, room_id, name, size, events, problem, seen_ms)
                        SELECT 'bucket', room_id, key, size, events, problem, seen_ms FROM bucket_files;
                    INSERT INTO transport_read_failures (transport, room_id, name, attempts, first_ms, next_ms)
                        SELECT 'bucket', room_id, key, attempts, first_ms, next_ms FROM bucket_read_failures;
                    DROP TABLE bucket_rooms;
                    DROP TABLE bucket_uploads;
                    DROP TABLE bucket_files;
                    DROP TABLE bucket_read_failures;
                    """)
        }
    }

    // MARK: Rooms

    /// Records that `transport` reaches `roomID` at `location`.
    /// - Throws: ``StoreError`` if the transport already reaches the room elsewhere or with another creator.
    public func addTransportRoom(_ transport: TransportName, roomID: String, location: String, creatorFingerprint: String) throws {
        try pool.write { db in
            if let existing = try transportRoom(db, transport, roomID) {
                guard existing.location == location, existing.creatorFingerprint == creatorFingerprint else {
                    throw StoreError(.invalidArgument, "Room \(roomID) already lives in \(existing.location).")
                }
                return
            }
            try db.execute(
                sql: "INSERT INTO transport_rooms (transport, room_id, location, creator_fingerprint) VALUES (?, ?, ?, ?)",
                arguments: [transport.rawValue, roomID, location, creatorFingerprint])
        }
    }

    /// Moves the room to another location of `transport` (another relay of the same deployment, when the one it used
    /// is gone): what it has not confirmed goes to the new location, and reading starts there afresh.
    /// - Throws: ``StoreError`` `unknown_room` if the transport does not reach the room.
    public func moveTransportRoom(_ transport: TransportName, roomID: String, to location: String) throws {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE transport_rooms SET location = ?, cursor = x'' WHERE transport = ? AND room_id = ?",
                arguments: [location, transport.rawValue, roomID])
            guard db.changesCount > 0 else { throw StoreError(.unknownRoom, "Room \(roomID) is not reached through a \(transport.rawValue).") }
        }
    }

    public func transportRoom(_ transport: TransportName, roomID: String) throws -> TransportRoom? {
        try pool.read { db in try transportRoom(db, transport, roomID) }
    }

    /// The rooms `transport` reaches, by room id.
    public func transportRooms(_ transport: TransportName) throws -> [TransportRoom] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM transport_rooms WHERE transport = ? ORDER BY room_id"), arguments: [transport.rawValue])
                .map(TransportRoom.init(row:))
        }
    }

    func transportRoom(_ db: Database, _ transport: TransportName, _ roomID: String) throws -> TransportRoom? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT * FROM transport_rooms WHERE transport = ? AND room_id = ?"), arguments: [transport.rawValue, roomID]
        ).map(TransportRoom.init(row:))
    }

    /// Replaces the transport's cursor in `roomID` with what `update` makes of the current one, atomically: two
    /// processes that advance it at once do not lose either's progress.
    public func updateCursor(_ transport: TransportName, roomID: String, _ update: ([UInt8]) -> [UInt8]) throws {
        try pool.write { db in
            guard let room = try transportRoom(db, transport, roomID) else { return }
            try db.execute(
                sql: "UPDATE transport_rooms SET cursor = ? WHERE transport = ? AND room_id = ?",
                arguments: [Data(update(room.cursor)), transport.rawValue, roomID])
        }
    }

    // MARK: What was received

    /// The names among `names` that the transport already processed in `roomID`.
    public func receivedNames(_ transport: TransportName, roomID: String, among names: [String]) throws -> Set<String> {
        try pool.read { db in
            var seen = Set<String>()
            for chunk in names.chunks(of: 500) {
                seen.formUnion(
                    try String.fetchAll(
                        db, sql: "SELECT name FROM transport_received WHERE transport = ? AND room_id = ? AND name IN (\(placeholders(chunk.count)))",
                        arguments: StatementArguments([transport.rawValue, roomID] + chunk)))
            }
            return seen
        }
    }

    /// Records that a unit was processed; call only once its events are committed, so a kill reads it again.
    public func recordReceived(_ transport: TransportName, roomID: String, _ object: ReceivedObject, seenMs: Int64) throws {
        try recordReceived(transport, roomID: roomID, [object], seenMs: seenMs)
    }

    /// Records that units were processed, in one transaction.
    public func recordReceived(_ transport: TransportName, roomID: String, _ objects: [ReceivedObject], seenMs: Int64) throws {
        guard !objects.isEmpty else { return }
        try pool.write { db in
            let record = try db.cachedStatement(
                sql: "INSERT OR REPLACE INTO transport_received (transport, room_id, name, size, events, problem, seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?)")
            let clear = try db.cachedStatement(sql: "DELETE FROM transport_read_failures WHERE transport = ? AND room_id = ? AND name = ?")
            for object in objects {
                try record.execute(arguments: [transport.rawValue, roomID, object.name, object.size, object.events, object.problem, seenMs])
                try clear.execute(arguments: [transport.rawValue, roomID, object.name])
            }
        }
    }

    /// Units of `roomID` whose reading failed for a transient reason, by name.
    public func readFailures(_ transport: TransportName, roomID: String) throws -> [String: ReadFailureRecord] {
        try pool.read { db in
            var failures: [String: ReadFailureRecord] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT name, attempts, first_ms, next_ms FROM transport_read_failures WHERE transport = ? AND room_id = ?",
                arguments: [transport.rawValue, roomID])
            {
                failures[row[0]] = ReadFailureRecord(attempts: row[1], firstMs: row[2], nextMs: row[3])
            }
            return failures
        }
    }

    /// Records a transient failure to read `name`, replacing the one recorded before; cleared when the unit is
    /// recorded as received (``recordReceived(_:roomID:_:seenMs:)``).
    public func saveReadFailure(_ transport: TransportName, roomID: String, name: String, _ failure: ReadFailureRecord) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO transport_read_failures (transport, room_id, name, attempts, first_ms, next_ms) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [transport.rawValue, roomID, name, failure.attempts, failure.firstMs, failure.nextMs])
        }
    }

    /// Every unit recorded as received in `roomID` whose name begins with `prefix`, by name (bytewise).
    public func receivedObjects(_ transport: TransportName, roomID: String, prefix: String) throws -> [ReceivedObject] {
        try pool.read { db in
            // Names compare bytewise (BINARY), so those with the prefix are the range [prefix, prefix + U+10FFFF).
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT name, size, events, problem FROM transport_received
                        WHERE transport = ? AND room_id = ? AND name >= ? AND name < ? ORDER BY name
                        """),
                arguments: [transport.rawValue, roomID, prefix, prefix + "\u{10FFFF}"]
            ).map { ReceivedObject(name: $0[0], size: $0[1], events: $0[2], problem: $0[3]) }
        }
    }

    /// Units the transport found fault with, newest first.
    public func receivedProblems(_ transport: TransportName, roomID: String, limit: Int = 100) throws -> [ReceivedObject] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT name, size, events, problem FROM transport_received
                        WHERE transport = ? AND room_id = ? AND problem IS NOT NULL ORDER BY seen_ms DESC LIMIT ?
                        """),
                arguments: [transport.rawValue, roomID, limit]
            ).map { ReceivedObject(name: $0[0], size: $0[1], events: $0[2], problem: $0[3]) }
        }
    }

    // MARK: Outbox

    /// Assigns this device's next unsent events in `roomID` to a new outbox file of `transport`, atomically, so two
    /// processes never put the same events into two different files. What goes in the file and its name are the
    /// transport's choice.
    /// - Parameters:
    ///   - limit: the most pending events handed to `assemble`.
    ///   - assemble: given the pending events (seq order) and whether an outbox file of the room already has a name,
    ///     the file's name, how many of the events it holds (from the first), and its bytes; `nil` to claim nothing.
    /// - Returns: the new outbox file, or `nil` when nothing is pending.
    public func claimOutbox(
        _ transport: TransportName, roomID: String, senderKey: String, limit: Int, createdMs: Int64,
        assemble: (_ pending: [PendingEvent], _ isTaken: (String) throws -> Bool) throws -> (name: String, events: Int, content: [UInt8])?
    ) throws -> OutboxFile? {
        try pool.write { db in
            let after =
                try Int64.fetchOne(
                    db.cachedStatement(sql: "SELECT MAX(last_seq) FROM transport_outbox WHERE transport = ? AND room_id = ?"),
                    arguments: [transport.rawValue, roomID]) ?? 0
            let pending = try Row.fetchAll(
                db, sql: "SELECT seq, timestamp_ms, wire FROM events WHERE room_id = ? AND sender_key = ? AND seq > ? ORDER BY seq LIMIT ?",
                arguments: [roomID, senderKey, after, limit]
            ).map { PendingEvent(seq: $0[0], timestampMs: $0[1], wire: ($0[2] as Data).bytes) }
            let isTaken = { (name: String) throws -> Bool in
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM transport_outbox WHERE transport = ? AND room_id = ? AND name = ?)"),
                    arguments: [transport.rawValue, roomID, name]) == true
            }
            guard !pending.isEmpty, let file = try assemble(pending, isTaken), (1...pending.count).contains(file.events) else { return nil }
            let (first, last) = (pending[0], pending[file.events - 1])
            try db.execute(
                sql: """
                    INSERT INTO transport_outbox (transport, room_id, name, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [transport.rawValue, roomID, file.name, first.seq, last.seq, first.timestampMs, last.timestampMs, Data(file.content), createdMs])
            return OutboxFile(
                id: db.lastInsertedRowID, transport: transport, roomID: roomID, name: file.name, firstSeq: first.seq, lastSeq: last.seq,
                firstTimestampMs: first.timestampMs, lastTimestampMs: last.timestampMs, content: file.content)
        }
    }

    /// Outbox files claimed but not confirmed (a failed attempt, or a process killed while sending), oldest first.
    public func unconfirmedOutbox(_ transport: TransportName, roomID: String) throws -> [OutboxFile] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT id, room_id, name, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content FROM transport_outbox
                        WHERE transport = ? AND room_id = ? AND confirmed_ms IS NULL ORDER BY id
                        """), arguments: [transport.rawValue, roomID]
            ).map {
                OutboxFile(
                    id: $0[0], transport: transport, roomID: $0[1], name: $0[2], firstSeq: $0[3], lastSeq: $0[4], firstTimestampMs: $0[5],
                    lastTimestampMs: $0[6], content: ($0[7] as Data).bytes)
            }
        }
    }

    /// Gives an outbox file a new name, when the transport already holds something under its first one.
    /// - Returns: `false` when another outbox file of this room has that name.
    public func renameOutbox(_ transport: TransportName, id: Int64, roomID: String, name: String) throws -> Bool {
        try pool.write { db in
            if try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM transport_outbox WHERE transport = ? AND room_id = ? AND name = ?)"),
                arguments: [transport.rawValue, roomID, name]) == true
            {
                return false
            }
            try db.execute(sql: "UPDATE transport_outbox SET name = ? WHERE id = ?", arguments: [name, id])
            return true
        }
    }

    /// Marks an outbox file confirmed under `object.name` (its events are IN_TRANSIT, and its bytes need not be kept)
    /// and records it as received, so the transport does not read it back; one transaction.
    public func confirmOutbox(_ transport: TransportName, id: Int64, roomID: String, object: ReceivedObject, confirmedMs: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE transport_outbox SET confirmed_ms = ?, content = NULL WHERE id = ?", arguments: [confirmedMs, id])
            try db.execute(
                sql: "INSERT OR REPLACE INTO transport_received (transport, room_id, name, size, events, problem, seen_ms) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                arguments: [transport.rawValue, roomID, object.name, object.size, object.events, confirmedMs])
        }
    }

    /// Records that this device's events in `roomID` up to its chain head already went through `transport`: they were
    /// just received from it, into a store started again empty. A confirmed outbox entry without bytes of its own,
    /// so the outbox does not send them a second time.
    public func markSent(_ transport: TransportName, roomID: String, senderKey: String, nowMs: Int64) throws {
        try pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT MIN(seq), MAX(seq), MIN(timestamp_ms), MAX(timestamp_ms) FROM events WHERE room_id = ? AND sender_key = ?",
                    arguments: [roomID, senderKey]), let first = row[0] as Int64?, let last = row[1] as Int64?
            else { return }
            let after =
                try Int64.fetchOne(
                    db, sql: "SELECT MAX(last_seq) FROM transport_outbox WHERE transport = ? AND room_id = ?", arguments: [transport.rawValue, roomID])
                ?? 0
            guard last > after else { return }
            try db.execute(
                sql: """
                    INSERT INTO transport_outbox (transport, room_id, name, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content,
                        created_ms, confirmed_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
                    """,
                arguments: [
                    transport.rawValue, roomID, "(received through seq \(last))", max(first, after + 1), last, row[2], row[3], nowMs, nowMs,
                ])
        }
    }

    /// The outbox watermark: the highest seq of this device's events in `roomID` that `transport` confirmed (0: none).
    public func outboxWatermark(_ transport: TransportName, roomID: String) throws -> Int64 {
        try pool.read { db in try EventStore.outboxWatermark(db, transport, roomID) }
    }

    static func outboxWatermark(_ db: Database, _ transport: TransportName, _ roomID: String) throws -> Int64 {
        try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT MAX(last_seq) FROM transport_outbox WHERE transport = ? AND room_id = ? AND confirmed_ms IS NOT NULL"),
            arguments: [transport.rawValue, roomID]) ?? 0
    }

    /// This device's outbox in `roomID` through `transport`.
    public func outboxStatus(_ transport: TransportName, roomID: String, senderKey: String) throws -> OutboxStatus {
        try pool.read { db in
            let confirmed = try EventStore.outboxWatermark(db, transport, roomID)
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT COUNT(*), MIN(timestamp_ms) FROM events WHERE room_id = ? AND sender_key = ? AND seq > ?"),
                arguments: [roomID, senderKey, confirmed])
            let inTransit = try Int.fetchOne(
                db.cachedStatement(sql: "SELECT COUNT(*) FROM events WHERE room_id = ? AND sender_key = ? AND seq <= ?"),
                arguments: [roomID, senderKey, confirmed])
            let pending: Int = row?[0] ?? 0
            var priority = MessagePriority.normal
            if pending > 0, let oldest: Int64 = row?[1] {
                // The few events with a priority, from the oldest pending one's time on: read from their partial index.
                let ranked = try Row.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT COUNT(*), MAX(CASE \(EventStore.priorityExpression) WHEN 'urgent' THEN 3 WHEN 'high' THEN 2 WHEN 'low' THEN 0 ELSE 1 END)
                            FROM events e INDEXED BY events_priority
                            WHERE e.room_id = ? AND e.timestamp_ms >= ? AND \(EventStore.priorityExpression) IS NOT NULL AND e.sender_key = ? AND e.seq > ?
                            """), arguments: [roomID, oldest, senderKey, confirmed])
                let count: Int = ranked?[0] ?? 0
                let top = (ranked?[1] as Int?).flatMap { rank in MessagePriority.allCases.first { $0.rank == rank } }
                // Pending events without a priority are normal ones.
                priority = count < pending ? max(top ?? .normal, .normal) : top ?? .normal
            }
            return OutboxStatus(pending: pending, inTransit: inTransit ?? 0, oldestPendingMs: row?[1], priority: priority)
        }
    }

    /// The ids of `senderKey`'s events of `roomID` above the outbox watermark of `transport`, oldest first, at most
    /// `limit`.
    public func pendingEventIDs(_ transport: TransportName, roomID: String, senderKey: String, limit: Int) throws -> [String] {
        try pool.read { db in
            let confirmed = try EventStore.outboxWatermark(db, transport, roomID)
            return try String.fetchAll(
                db.cachedStatement(sql: "SELECT event_id FROM events WHERE room_id = ? AND sender_key = ? AND seq > ? ORDER BY seq LIMIT ?"),
                arguments: [roomID, senderKey, confirmed, limit])
        }
    }
}

extension TransportRoom {
    init(row: Row) {
        self.init(
            transport: TransportName(row["transport"]), roomID: row["room_id"], location: row["location"],
            creatorFingerprint: row["creator_fingerprint"], cursor: (row["cursor"] as Data).bytes)
    }
}
