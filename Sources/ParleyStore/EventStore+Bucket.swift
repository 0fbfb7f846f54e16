import Foundation
import GRDB
import ParleyCore

/// A room that lives in a bucket, with this node's progress through it.
public struct BucketRoom: Sendable, Equatable {
    public var roomID: String
    public var bucketURL: String
    /// Lowercase hex SHA-256 of the room creator's signing key: a joiner's pin against a replaced metadata.json.
    public var creatorFingerprint: String
    /// The newest start time (ms) among log file names seen, never later than the local clock was then.
    public var logsCursorMs: Int64
    /// The newest upload time among hints seen, likewise.
    public var hintsCursorMs: Int64
    /// When the logs were last listed from the beginning (0: never).
    public var fullListingMs: Int64
}

/// A batch of this device's events assigned to one log file.
public struct BucketUpload: Sendable, Equatable {
    public var id: Int64
    public var roomID: String
    public var key: String
    public var firstSeq: Int64
    public var lastSeq: Int64
    public var firstTimestampMs: Int64
    public var lastTimestampMs: Int64
    /// The file's exact bytes, kept until the bucket confirms the write, so a retry writes the same file.
    public var content: [UInt8]
}

/// How far this device's events in a bucket room have gone.
public struct OutboxStatus: Sendable, Equatable {
    /// Signed and stored here, not yet in a confirmed file (PENDING).
    public var pending: Int
    /// In a file the bucket confirmed (IN_TRANSIT: on its way to the other members).
    public var inTransit: Int
    /// The oldest pending event's time, if any.
    public var oldestPendingMs: Int64?
}

/// What a sync recorded about one object it read (or chose not to).
public struct BucketFileRecord: Sendable {
    public var key: String
    public var size: Int64
    public var events: Int
    /// What was wrong with it, if anything; shown by `parley sync` and kept for `parley status`.
    public var problem: String?

    public init(key: String, size: Int64, events: Int, problem: String?) {
        self.key = key
        self.size = size
        self.events = events
        self.problem = problem
    }
}

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

    // MARK: Rooms

    /// Records that `roomID` lives in the bucket at `url`.
    /// - Throws: ``StoreError`` if the room is already tied to another bucket or creator.
    public func addBucketRoom(roomID: String, bucketURL: String, creatorFingerprint: String) throws {
        try pool.write { db in
            if let existing = try bucketRoom(db, roomID) {
                guard existing.bucketURL == bucketURL, existing.creatorFingerprint == creatorFingerprint else {
                    throw StoreError(.invalidArgument, "Room \(roomID) already lives in \(existing.bucketURL).")
                }
                return
            }
            try db.execute(
                sql: "INSERT INTO bucket_rooms (room_id, bucket_url, creator_fingerprint) VALUES (?, ?, ?)",
                arguments: [roomID, bucketURL, creatorFingerprint])
        }
    }

    public func bucketRoom(roomID: String) throws -> BucketRoom? {
        try pool.read { db in try bucketRoom(db, roomID) }
    }

    public func bucketRooms() throws -> [BucketRoom] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT * FROM bucket_rooms ORDER BY room_id")).map(BucketRoom.init(row:))
        }
    }

    func bucketRoom(_ db: Database, _ roomID: String) throws -> BucketRoom? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM bucket_rooms WHERE room_id = ?"), arguments: [roomID]).map(BucketRoom.init(row:))
    }

    /// Moves a room's listing cursors forward (never back) and records a full listing.
    public func advanceBucketCursors(roomID: String, logsMs: Int64?, hintsMs: Int64?, fullListingMs: Int64?) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    UPDATE bucket_rooms SET logs_cursor_ms = MAX(logs_cursor_ms, ?), hints_cursor_ms = MAX(hints_cursor_ms, ?),
                        full_listing_ms = MAX(full_listing_ms, ?) WHERE room_id = ?
                    """,
                arguments: [logsMs ?? 0, hintsMs ?? 0, fullListingMs ?? 0, roomID])
        }
    }

    // MARK: Files read

    /// The keys among `keys` that a sync already processed.
    public func seenBucketFiles(roomID: String, keys: [String]) throws -> Set<String> {
        try pool.read { db in
            var seen = Set<String>()
            for chunk in keys.chunks(of: 500) {
                seen.formUnion(
                    try String.fetchAll(
                        db, sql: "SELECT key FROM bucket_files WHERE room_id = ? AND key IN (\(placeholders(chunk.count)))",
                        arguments: StatementArguments([roomID] + chunk)))
            }
            return seen
        }
    }

    /// Records that a file was processed; call only once its events are committed, so a kill re-reads it.
    public func recordBucketFile(roomID: String, _ record: BucketFileRecord, seenMs: Int64) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO bucket_files (room_id, key, size, events, problem, seen_ms) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [roomID, record.key, record.size, record.events, record.problem, seenMs])
            try db.execute(sql: "DELETE FROM bucket_read_failures WHERE room_id = ? AND key = ?", arguments: [roomID, record.key])
        }
    }

    /// Files of `roomID` whose reading failed for a transient reason, by key: failures in a row, the first one's time,
    /// and when to read the file again (ms). The bucket transport decides these times; the store only keeps them.
    public func bucketReadFailures(roomID: String) throws -> [String: (attempts: Int, firstMs: Int64, nextMs: Int64)] {
        try pool.read { db in
            var failures: [String: (attempts: Int, firstMs: Int64, nextMs: Int64)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT key, attempts, first_ms, next_ms FROM bucket_read_failures WHERE room_id = ?", arguments: [roomID]) {
                failures[row[0]] = (row[1], row[2], row[3])
            }
            return failures
        }
    }

    /// Records a transient failure to read `key`, replacing the one recorded before; cleared when the file is recorded
    /// as read (``recordBucketFile(roomID:_:seenMs:)``).
    public func saveBucketReadFailure(roomID: String, key: String, attempts: Int, firstMs: Int64, nextMs: Int64) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO bucket_read_failures (room_id, key, attempts, first_ms, next_ms) VALUES (?, ?, ?, ?, ?)",
                arguments: [roomID, key, attempts, firstMs, nextMs])
        }
    }

    /// Files a sync found fault with, newest first.
    public func bucketFileProblems(roomID: String, limit: Int = 100) throws -> [BucketFileRecord] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT key, size, events, problem FROM bucket_files WHERE room_id = ? AND problem IS NOT NULL ORDER BY seen_ms DESC LIMIT ?"),
                arguments: [roomID, limit]
            ).map { BucketFileRecord(key: $0[0], size: $0[1], events: $0[2], problem: $0[3]) }
        }
    }

    // MARK: Outbox

    /// Assigns this device's next unsent events in `roomID` to a new upload, atomically, so two processes never
    /// put the same events into two different files. What goes in the file and its name are the transport's choice.
    /// - Parameters:
    ///   - limit: the most pending events handed to `assemble`.
    ///   - assemble: given the pending events (seq order) and whether an upload of the room already has a name, the
    ///     file's key, how many of the events it holds (from the first), and its bytes; `nil` to claim nothing.
    /// - Returns: the new upload, or `nil` when nothing is pending.
    public func claimUpload(
        roomID: String, senderKey: String, limit: Int, createdMs: Int64,
        assemble: (_ pending: [(seq: Int64, timestampMs: Int64, wire: [UInt8])], _ isTaken: (String) throws -> Bool) throws
            -> (key: String, events: Int, content: [UInt8])?
    ) throws -> BucketUpload? {
        try pool.write { db in
            let after = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(last_seq) FROM bucket_uploads WHERE room_id = ?"), arguments: [roomID]) ?? 0
            let pending = try Row.fetchAll(
                db, sql: "SELECT seq, timestamp_ms, wire FROM events WHERE room_id = ? AND sender_key = ? AND seq > ? ORDER BY seq LIMIT ?",
                arguments: [roomID, senderKey, after, limit]
            ).map { (seq: $0[0] as Int64, timestampMs: $0[1] as Int64, wire: ($0[2] as Data).bytes) }
            let isTaken = { (key: String) throws -> Bool in
                try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM bucket_uploads WHERE room_id = ? AND key = ?)"), arguments: [roomID, key]) == true
            }
            guard !pending.isEmpty, let file = try assemble(pending, isTaken), (1...pending.count).contains(file.events) else { return nil }
            let (first, last) = (pending[0], pending[file.events - 1])
            try db.execute(
                sql: """
                    INSERT INTO bucket_uploads (room_id, key, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [roomID, file.key, first.seq, last.seq, first.timestampMs, last.timestampMs, Data(file.content), createdMs])
            return BucketUpload(
                id: db.lastInsertedRowID, roomID: roomID, key: file.key, firstSeq: first.seq, lastSeq: last.seq, firstTimestampMs: first.timestampMs,
                lastTimestampMs: last.timestampMs, content: file.content)
        }
    }

    /// Uploads assigned but not confirmed (a failed attempt, or a process killed mid-flush), oldest first.
    public func unconfirmedUploads(roomID: String) throws -> [BucketUpload] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT id, room_id, key, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content FROM bucket_uploads
                        WHERE room_id = ? AND confirmed_ms IS NULL ORDER BY id
                        """), arguments: [roomID]
            ).map {
                BucketUpload(
                    id: $0[0], roomID: $0[1], key: $0[2], firstSeq: $0[3], lastSeq: $0[4], firstTimestampMs: $0[5], lastTimestampMs: $0[6],
                    content: ($0[7] as Data).bytes)
            }
        }
    }

    /// Gives an upload a new name, when another object already holds its first one.
    /// - Returns: `false` when another upload of this room has that name.
    public func renameUpload(id: Int64, roomID: String, key: String) throws -> Bool {
        try pool.write { db in
            if try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM bucket_uploads WHERE room_id = ? AND key = ?)"), arguments: [roomID, key]) == true
            {
                return false
            }
            try db.execute(sql: "UPDATE bucket_uploads SET key = ? WHERE id = ?", arguments: [key, id])
            return true
        }
    }

    /// Marks an upload written under `key` (its events are IN_TRANSIT, and its bytes need not be kept) and records
    /// the file as seen, so a sync does not read it back; one transaction.
    public func confirmUpload(id: Int64, roomID: String, file: BucketFileRecord, confirmedMs: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE bucket_uploads SET confirmed_ms = ?, content = NULL WHERE id = ?", arguments: [confirmedMs, id])
            try db.execute(
                sql: "INSERT OR REPLACE INTO bucket_files (room_id, key, size, events, problem, seen_ms) VALUES (?, ?, ?, ?, NULL, ?)",
                arguments: [roomID, file.key, file.size, file.events, confirmedMs])
        }
    }

    /// Records that this device's events in `roomID` up to its chain head are already in the bucket: they were just
    /// read from it, into a store started again empty. An upload without a file of its own, so the outbox does not
    /// write them a second time.
    public func markInBucket(roomID: String, senderKey: String, nowMs: Int64) throws {
        try pool.write { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT MIN(seq), MAX(seq), MIN(timestamp_ms), MAX(timestamp_ms) FROM events WHERE room_id = ? AND sender_key = ?",
                    arguments: [roomID, senderKey]), let first = row[0] as Int64?, let last = row[1] as Int64?
            else { return }
            let after = try Int64.fetchOne(db, sql: "SELECT MAX(last_seq) FROM bucket_uploads WHERE room_id = ?", arguments: [roomID]) ?? 0
            guard last > after else { return }
            try db.execute(
                sql: """
                    INSERT INTO bucket_uploads (room_id, key, first_seq, last_seq, first_timestamp_ms, last_timestamp_ms, content, created_ms, confirmed_ms)
                    VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)
                    """,
                arguments: [roomID, "(read from the bucket through seq \(last))", max(first, after + 1), last, row[2], row[3], nowMs, nowMs])
        }
    }

    /// This device's outbox in `roomID`.
    public func outboxStatus(roomID: String, senderKey: String) throws -> OutboxStatus {
        try pool.read { db in
            let confirmed =
                try Int64.fetchOne(
                    db.cachedStatement(sql: "SELECT MAX(last_seq) FROM bucket_uploads WHERE room_id = ? AND confirmed_ms IS NOT NULL"), arguments: [roomID])
                ?? 0
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT COUNT(*), MIN(timestamp_ms) FROM events WHERE room_id = ? AND sender_key = ? AND seq > ?"),
                arguments: [roomID, senderKey, confirmed])
            let inTransit = try Int.fetchOne(
                db.cachedStatement(sql: "SELECT COUNT(*) FROM events WHERE room_id = ? AND sender_key = ? AND seq <= ?"),
                arguments: [roomID, senderKey, confirmed])
            return OutboxStatus(pending: row?[0] ?? 0, inTransit: inTransit ?? 0, oldestPendingMs: row?[1])
        }
    }
}

extension EventStore {
    /// The ids of `senderKey`'s events of `roomID` that no confirmed upload holds yet, oldest first, at most `limit`.
    public func pendingEventIDs(roomID: String, senderKey: String, limit: Int) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT event_id FROM events WHERE room_id = ? AND sender_key = ?
                            AND seq > COALESCE((SELECT MAX(last_seq) FROM bucket_uploads WHERE room_id = ? AND confirmed_ms IS NOT NULL), 0)
                        ORDER BY seq LIMIT ?
                        """), arguments: [roomID, senderKey, roomID, limit])
        }
    }
}

extension BucketRoom {
    init(row: Row) {
        roomID = row["room_id"]
        bucketURL = row["bucket_url"]
        creatorFingerprint = row["creator_fingerprint"]
        logsCursorMs = row["logs_cursor_ms"]
        hintsCursorMs = row["hints_cursor_ms"]
        fullListingMs = row["full_listing_ms"]
    }
}
