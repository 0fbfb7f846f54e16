import CSQLiteTuning
import Foundation
import GRDB
import ParleyCore

/// A store error: what went wrong, in the user's terms, and what to do about it; its code says what kind of
/// failure it is, for callers to switch on.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure. The names are those of the client's error codes, which carry them on unchanged; new
    /// codes break nobody.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        /// The room's rules refuse the event (power levels, membership, a ban).
        public static let notAllowed = Code(name: "not_allowed")
        /// The store holds no such room.
        public static let unknownRoom = Code(name: "unknown_room")
        /// The event refers to one the store does not hold.
        public static let unknownEvent = Code(name: "unknown_event")
        /// The event itself is invalid: malformed, not the next of its chain, or already stored.
        public static let invalidEvent = Code(name: "invalid_event")
        /// The request contradicts what the store holds (a room tied to another bucket).
        public static let invalidArgument = Code(name: "invalid_argument")
        /// The store file is damaged: its events must come from elsewhere (buckets, other nodes).
        public static let damaged = Code(name: "store_damaged")
        /// Reading or writing the file failed: a full disk, a read-only file or disk, missing permissions, an I/O error.
        public static let io = Code(name: "io")
        /// More than the store or SQLite takes at once.
        public static let tooLarge = Code(name: "too_large")
        /// Another process held the database locked for longer than the busy timeout.
        public static let busy = Code(name: "busy")
        /// A failure of Parley's own (SQLite refused a statement): a bug to report.
        public static let internalError = Code(name: "internal")

        public var description: String { name }
    }

    public var code: Code
    public var message: String
    public var remedy: String?

    public init(_ code: Code, _ message: String, remedy: String? = nil) {
        self.code = code
        self.message = message
        self.remedy = remedy
    }

    public var description: String { [message, remedy].compactMap { $0 }.joined(separator: " ") }
}

/// Authorization status of a chained event, as stored.
public enum EventStatus: Int, Sendable {
    case accepted = 0
    /// Validly signed and chained, but not allowed by room state: evidence only.
    case rejected = 1
    /// Refers to an event not held yet.
    case awaitingTarget = 2
}

/// The node's SQLite store (docs/ARCHITECTURE.md): the exact wire bytes of every accepted event plus indexed
/// fields, per-device chains, held-back events, fork proofs, the rejected-events log and full-text search.
///
/// One writer at a time (SQLite's rule); readers run concurrently in WAL mode. Every ingest batch is one
/// transaction, committed with `synchronous=FULL`, so whatever a method reports as stored survives a kill.
public final class EventStore: Sendable {
    let pool: DatabasePool
    /// Rooms' resolved state, rebuilt from stored state events on first use.
    let cache = StateCache()
    public let path: String
    /// Opens key deliveries to the device this store belongs to; without it, key events are stored but not opened.
    let keyOpener: KeyOpener?

    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// - Parameter keyOpener: the owning device's way to open the room keys sealed to it.
    /// - Throws: ``StoreError`` when the file cannot be opened (`.io`, `.busy`) or is damaged (`.damaged`).
    public init(path: String, keyOpener: KeyOpener? = nil) throws {
        _ = EventStore.sqliteTuned
        self.path = path
        self.keyOpener = keyOpener
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // FULL: a committed batch is on disk before we report it stored. secure_delete: stripped content is
            // overwritten, not left in free pages.
            try db.execute(sql: "PRAGMA page_size = 16384; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            // GRDB sets a pool's writer to synchronous=NORMAL once WAL is on, after `prepareDatabase`: with NORMAL a
            // commit is not synced, and a power loss could take what a method already reported as stored.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            try EventStore.migrator.migrate(pool)
        } catch {
            guard let error = StoreError(error, path: path) else {
                throw StoreError(.io, "Cannot open the store \(path): \(error).", remedy: "Check that the file and its folder are yours and writable.")
            }
            throw error
        }
    }

    /// SQLite in multi-thread mode without memory statistics: together their mutexes took ~6% of ingest. Set once,
    /// before the process's first connection (a later call changes nothing).
    static let sqliteTuned = parley_sqlite_tune()

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        id INTEGER PRIMARY KEY,
                        hash TEXT NOT NULL,
                        event_id TEXT NOT NULL UNIQUE,
                        room_id TEXT NOT NULL,
                        sender_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        timestamp_ms INTEGER NOT NULL,
                        type TEXT NOT NULL,
                        parent_event_id TEXT,
                        target_event_id TEXT,
                        relation_key TEXT,
                        status INTEGER NOT NULL,
                        reason TEXT,
                        redacted INTEGER NOT NULL DEFAULT 0,
                        wire BLOB NOT NULL,
                        UNIQUE (room_id, sender_key, seq)
                    );
                    CREATE INDEX events_order ON events (room_id, timestamp_ms, seq, event_id);
                    CREATE INDEX events_target ON events (target_event_id) WHERE target_event_id IS NOT NULL;
                    CREATE INDEX events_state ON events (room_id, timestamp_ms, seq, event_id)
                        WHERE type IN ('m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.name', 'm.room.topic');
                    CREATE INDEX events_awaiting ON events (target_event_id) WHERE status = 2;

                    CREATE TABLE pending_events (
                        hash TEXT PRIMARY KEY,
                        room_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        waiting_for_seq INTEGER NOT NULL,
                        received_ms INTEGER NOT NULL,
                        wire BLOB NOT NULL
                    );
                    CREATE INDEX pending_chain ON pending_events (room_id, sender_key, waiting_for_seq);

                    CREATE TABLE forks (
                        room_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        first BLOB NOT NULL,
                        second BLOB NOT NULL,
                        detected_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, sender_key, seq, first, second)
                    );

                    CREATE TABLE rejected_events (
                        id INTEGER PRIMARY KEY,
                        received_ms INTEGER NOT NULL,
                        room_id TEXT,
                        event_id TEXT,
                        hash TEXT,
                        reason TEXT NOT NULL,
                        excerpt BLOB NOT NULL
                    );

                    CREATE TABLE rooms (
                        room_id TEXT PRIMARY KEY,
                        last_timestamp_ms INTEGER NOT NULL,
                        last_seq INTEGER NOT NULL,
                        last_event_id TEXT NOT NULL,
                        state_version INTEGER NOT NULL DEFAULT 0,
                        create_hash TEXT
                    );

                    CREATE VIRTUAL TABLE message_search USING fts5 (body, tokenize = 'unicode61 remove_diacritics 2');
                    CREATE TABLE search_state (indexed_up_to INTEGER NOT NULL);
                    INSERT INTO search_state VALUES (0);
                    """)
        }
        registerBucketMigration(&migrator)
        registerEncryptionMigration(&migrator)
        registerPreSharedSecretMigration(&migrator)
        registerBucketReadFailureMigration(&migrator)
        registerEventIDsAreNamesMigration(&migrator)
        registerKeyForwardingMigration(&migrator)
        registerRejectedLogMigration(&migrator)
        registerTransportTablesMigration(&migrator)
        registerFeedChangesMigration(&migrator)
        registerSentFilesMigration(&migrator)
        registerReceiptHeadsMigration(&migrator)
        registerRoomPreferencesMigration(&migrator)
        registerQueryMigration(&migrator)
        registerSendFailureCodesMigration(&migrator)
        registerPriorityMigration(&migrator)
        registerBlockDeletionsMigration(&migrator)
        registerWhiteningMigration(&migrator)
        return migrator
    }
}

extension EventStore {
    /// Event ids stop being unique (docs/PROTOCOL.md §6.5): another device's event may carry an id already stored,
    /// and both are kept. SQLite cannot drop a UNIQUE constraint, so the table is rebuilt. A collision takes the
    /// next free `id_collision` number: the common case still costs one probe of one unique index.
    static func registerEventIDsAreNamesMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v8-event-ids-are-names") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events_v8 (
                        id INTEGER PRIMARY KEY,
                        hash TEXT NOT NULL,
                        event_id TEXT NOT NULL,
                        id_collision INTEGER NOT NULL DEFAULT 0,
                        room_id TEXT NOT NULL,
                        sender_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        timestamp_ms INTEGER NOT NULL,
                        type TEXT NOT NULL,
                        parent_event_id TEXT,
                        target_event_id TEXT,
                        relation_key TEXT,
                        status INTEGER NOT NULL,
                        reason TEXT,
                        redacted INTEGER NOT NULL DEFAULT 0,
                        wire BLOB NOT NULL,
                        UNIQUE (event_id, id_collision),
                        UNIQUE (room_id, sender_key, seq)
                    );
                    INSERT INTO events_v8 (id, hash, event_id, room_id, sender_id, sender_key, seq, timestamp_ms, type, parent_event_id,
                        target_event_id, relation_key, status, reason, redacted, wire)
                    SELECT id, hash, event_id, room_id, sender_id, sender_key, seq, timestamp_ms, type, parent_event_id,
                        target_event_id, relation_key, status, reason, redacted, wire FROM events;
                    DROP TABLE events;
                    ALTER TABLE events_v8 RENAME TO events;
                    CREATE INDEX events_order ON events (room_id, timestamp_ms, seq, event_id, sender_key);
                    CREATE INDEX events_target ON events (target_event_id) WHERE target_event_id IS NOT NULL;
                    CREATE INDEX events_sealed ON events (id) WHERE type = 'm.room.encrypted';
                    CREATE INDEX events_replayed ON events (room_id, timestamp_ms, seq, event_id, sender_key) WHERE \(RoomAuthorizer.replayedTypesCondition);
                    CREATE INDEX events_awaiting_room ON events (room_id, target_event_id) WHERE status = 2;
                    CREATE INDEX events_room_key_status ON events (id, status) WHERE type = 'm.room.key';

                    ALTER TABLE rooms ADD COLUMN last_sender_key TEXT NOT NULL DEFAULT '';
                    UPDATE rooms SET last_sender_key = coalesce((
                        SELECT e.sender_key FROM events e WHERE e.event_id = rooms.last_event_id AND e.room_id = rooms.room_id
                            AND e.timestamp_ms = rooms.last_timestamp_ms AND e.seq = rooms.last_seq), '');

                    CREATE TABLE event_id_collisions (
                        room_id TEXT NOT NULL,
                        event_id TEXT NOT NULL,
                        first BLOB NOT NULL,
                        second BLOB NOT NULL,
                        detected_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, event_id, first, second)
                    );
                    """)
        }
    }
}

/// Rooms' state at their newest authorized event, cached between batches and tagged with the room's
/// `state_version`, so a change written by another process is noticed.
final class StateCache: @unchecked Sendable {
    private let lock = NSLock()
    private var states: [String: (version: Int64, state: RoomState)] = [:]

    func get(_ roomID: String, version: Int64) -> RoomState? {
        lock.withLock {
            guard let entry = states[roomID], entry.version == version else { return nil }
            return entry.state
        }
    }

    func set(_ state: RoomState, version: Int64, for roomID: String) {
        lock.withLock { states[roomID] = (version, state) }
    }

    /// Forgets a room: one created again later starts from version 0 too, and must not find this state.
    func remove(_ roomID: String) {
        _ = lock.withLock { states.removeValue(forKey: roomID) }
    }
}

extension Data {
    var bytes: [UInt8] { [UInt8](self) }
}
