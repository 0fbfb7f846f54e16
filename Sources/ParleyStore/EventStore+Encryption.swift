import Foundation
import GRDB
import ParleyCore
import ParleySync
import Synchronization

/// What one decryption pass did.
public struct DecryptionReport: Sendable, Equatable {
    public var decrypted = 0
    /// Sealed events whose key this node does not hold (yet), as of this pass; they are tried again on the next.
    /// A pass that found nothing to do reports 0 here: ``EventStore/undecryptableCount(roomID:)`` counts them.
    public var waitingForKey = 0
    /// Sealed events that can never be shown, with the reason; each is also in the rejected-events log.
    public var failed: [(eventID: String, reason: String)] = []

    public init() {}

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.decrypted == rhs.decrypted && lhs.waitingForKey == rhs.waitingForKey && lhs.failed.map(\.eventID) == rhs.failed.map(\.eventID)
    }
}

/// Whether this device could open a sealed or key event (docs/PROTOCOL.md §14.3, §14.4).
public enum OpeningOutcome: Sendable, Equatable {
    case opened
    /// Sealed with a key this device does not hold (yet); it opens when the key arrives.
    case waitingForKey
    /// It can never be opened here, with the reason (`m.room.encrypted: decrypt_failed: …`).
    case failed(String)
}

/// An `m.room.key` event that gives a device a key it has not opened yet.
public struct KeyDelivery: Sendable {
    public var row: Int64
    public var event: Event
    public var content: RoomKeyContent
    public var sealed: SealedRoomKey
}

/// A sealed event an ingest batch stored, with its content as the batch parsed it (when it judged the event).
struct StoredSealed {
    let event: Event
    let content: EncryptedContent?
}

/// Opens the room keys sealed to one device with that device's exchange key. The store holds no private key: the
/// node that owns the device gives it this when it opens the store, so key events and the content they unlock are
/// opened in the transaction that stores them.
public struct KeyOpener: Sendable {
    /// The device whose deliveries are opened: its signing key, base64.
    public let device: String
    public let open: @Sendable (KeyDelivery) -> Result<RoomKey, EncryptionError>
    /// Opens an `m.room.key_forward` event (given with its parsed content) addressed to the device.
    public let openForward: @Sendable (Event, KeyForwardContent) -> Result<[ForwardedKey], EncryptionError>

    public init(
        device: String, open: @escaping @Sendable (KeyDelivery) -> Result<RoomKey, EncryptionError>,
        openForward: @escaping @Sendable (Event, KeyForwardContent) -> Result<[ForwardedKey], EncryptionError>
    ) {
        self.device = device
        self.open = open
        self.openForward = openForward
    }
}

/// Room keys already derived in this process, by key id.
private let derivedKeys = Mutex<[String: RoomKey]>([:])

/// Room keys and decrypted content (docs/PROTOCOL.md §14). Both stay on this device: they are never exported,
/// synced or written to a bucket. The decrypted view of an `m.room.encrypted` event is its envelope with the
/// inner type and content, which the timeline and search use in place of the sealed event.
extension EventStore {
    static func registerEncryptionMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-encryption") { db in
            try db.execute(
                sql: """
                    CREATE TABLE room_keys (
                        room_id TEXT NOT NULL,
                        key_id TEXT NOT NULL,
                        key BLOB NOT NULL,
                        added_ms INTEGER NOT NULL,
                        seals INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (room_id, key_id)
                    );
                    CREATE TABLE key_deliveries (
                        event_row INTEGER PRIMARY KEY,
                        problem TEXT
                    );
                    CREATE TABLE plaintexts (
                        event_row INTEGER PRIMARY KEY,
                        room_id TEXT NOT NULL,
                        type TEXT,
                        content BLOB,
                        target_event_id TEXT,
                        problem TEXT
                    );
                    CREATE INDEX plaintexts_target ON plaintexts (target_event_id) WHERE target_event_id IS NOT NULL;
                    CREATE TABLE sealed_waiting (
                        event_row INTEGER PRIMARY KEY,
                        room_id TEXT NOT NULL,
                        key_id TEXT NOT NULL
                    );
                    CREATE INDEX sealed_waiting_key ON sealed_waiting (room_id, key_id);
                    CREATE TABLE decrypt_state (scanned_up_to INTEGER NOT NULL);
                    INSERT INTO decrypt_state VALUES (0);
                    CREATE INDEX events_room_keys ON events (id) WHERE type = 'm.room.key';
                    CREATE INDEX events_sealed ON events (id) WHERE type = 'm.room.encrypted';
                    CREATE INDEX events_replayed ON events (room_id, timestamp_ms, seq, event_id)
                        WHERE type IN ('m.room.create', 'm.room.encryption', 'm.room.key', 'm.room.member', 'm.room.name', 'm.room.power_levels', 'm.room.topic');
                    DROP INDEX events_state;
                    """)
        }
    }

    static func registerPreSharedSecretMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-psk-secrets") { db in
            try db.execute(sql: "CREATE TABLE psk_secrets (room_id TEXT PRIMARY KEY, secret BLOB NOT NULL, from_passphrase INTEGER NOT NULL)")
        }
        // Whether a room has events awaiting their target is asked on every ingest: by room, not by scanning the
        // room's events (which made each message cost more as history grew).
        migrator.registerMigration("v5-awaiting-by-room") { db in
            try db.execute(
                sql: """
                    CREATE INDEX events_awaiting_room ON events (room_id, target_event_id) WHERE status = 2;
                    DROP INDEX events_awaiting;
                    CREATE INDEX events_room_key_status ON events (id, status) WHERE type = 'm.room.key';
                    DROP INDEX events_room_keys;
                    """)
        }
        migrator.registerMigration("v6-replayed-without-in-list") { db in
            try db.execute(
                sql: """
                    DROP INDEX events_replayed;
                    CREATE INDEX events_replayed ON events (room_id, timestamp_ms, seq, event_id) WHERE \(RoomAuthorizer.replayedTypesCondition);
                    """)
        }
    }

    /// Keeps the secret of a pre-shared-key room: invite codes carry it, unless it comes from a passphrase.
    public func setPreSharedSecret(_ secret: [UInt8], roomID: String, fromPassphrase: Bool) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO psk_secrets (room_id, secret, from_passphrase) VALUES (?, ?, ?)",
                arguments: [roomID, Data(secret), fromPassphrase])
        }
    }

    public func preSharedSecret(roomID: String) throws -> (secret: [UInt8], fromPassphrase: Bool)? {
        try pool.read { db in
            try Row.fetchOne(db.cachedStatement(sql: "SELECT secret, from_passphrase FROM psk_secrets WHERE room_id = ?"), arguments: [roomID])
                .map { (($0[0] as Data).bytes, $0[1]) }
        }
    }

    public func allPreSharedSecrets() throws -> [(roomID: String, secret: [UInt8], fromPassphrase: Bool)] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT room_id, secret, from_passphrase FROM psk_secrets ORDER BY room_id"))
                .map { ($0[0], ($0[1] as Data).bytes, $0[2]) }
        }
    }

    // MARK: Keys

    /// Stores room keys this device holds (idempotent).
    public func addRoomKeys(_ keys: [RoomKey], roomID: String, addedMs: Int64) throws {
        try pool.write { db in
            for key in keys {
                try db.execute(
                    sql: "INSERT OR IGNORE INTO room_keys (room_id, key_id, key, added_ms) VALUES (?, ?, ?, ?)",
                    arguments: [roomID, key.keyID, Data(key.bytes), addedMs])
            }
        }
    }

    /// Every key of `roomID` this device holds, by key id.
    public func roomKeys(roomID: String) throws -> [String: RoomKey] {
        try pool.read { db in try EventStore.roomKeys(db: db, roomID: roomID) }
    }

    static func roomKeys(db: Database, roomID: String) throws -> [String: RoomKey] {
        var keys: [String: RoomKey] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT key_id, key FROM room_keys WHERE room_id = ?"), arguments: [roomID]) {
            let keyID: String = row[0]
            let bytes = (row[1] as Data).bytes
            // Deriving a key's id and AEAD key costs two HMACs; keys are read on every send and every pass.
            if let known = derivedKeys.withLock({ $0[keyID] }), known.bytes == bytes {
                keys[keyID] = known
                continue
            }
            let key = try RoomKey(bytes: bytes)
            derivedKeys.withLock { $0[key.keyID] = key }
            keys[key.keyID] = key
        }
        return keys
    }

    /// Every room key this device holds, by room: what a key backup carries.
    public func allRoomKeys() throws -> [(roomID: String, key: RoomKey)] {
        try pool.read { db in
            try Row.fetchAll(db.cachedStatement(sql: "SELECT room_id, key FROM room_keys ORDER BY room_id, added_ms, key_id")).map { row in
                (row[0], try RoomKey(bytes: (row[1] as Data).bytes))
            }
        }
    }

    /// How many times this device sealed content under `keyID`.
    public func sealCount(roomID: String, keyID: String) throws -> Int64 {
        try pool.read { db in
            try Int64.fetchOne(db.cachedStatement(sql: "SELECT seals FROM room_keys WHERE room_id = ? AND key_id = ?"), arguments: [roomID, keyID]) ?? 0
        }
    }

    /// Whether a decryption pass has anything to do: key events not looked at yet, sealed events not opened yet, or
    /// sealed events waiting for a key that has arrived. One read; most passes stop here.
    public func hasDecryptionWork() throws -> (keyDeliveries: Bool, sealed: Bool) {
        try pool.read { db in
            let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM events e WHERE e.type = 'm.room.key' AND e.status = 0
                                AND NOT EXISTS (SELECT 1 FROM key_deliveries d WHERE d.event_row = e.id))
                            OR EXISTS (SELECT 1 FROM events e WHERE e.type = 'm.room.key_forward' AND e.status = 0
                                AND NOT EXISTS (SELECT 1 FROM key_deliveries d WHERE d.event_row = e.id)),
                            EXISTS (SELECT 1 FROM events WHERE type = 'm.room.encrypted' AND id > (SELECT scanned_up_to FROM decrypt_state)
                                AND NOT EXISTS (SELECT 1 FROM plaintexts p WHERE p.event_row = events.id))
                            OR EXISTS (SELECT 1 FROM sealed_waiting w JOIN room_keys k ON k.room_id = w.room_id AND k.key_id = w.key_id)
                            OR EXISTS (SELECT 1 FROM sealed_waiting w JOIN events e ON e.id = w.event_row
                                JOIN message_keys m ON m.room_id = e.room_id AND m.sender_key = e.sender_key AND m.seq = e.seq)
                        """))
            return (row?[0] ?? true, row?[1] ?? true)
        }
    }

    /// Opens what a decryption pass would find: key deliveries to this device (with the store's ``KeyOpener``),
    /// then sealed events under keys it holds. One read when there is nothing to do, else one transaction.
    @discardableResult
    public func catchUpDecryption(receivedMs: Int64) throws -> DecryptionReport {
        let work = try hasDecryptionWork()
        let openKeys = work.keyDeliveries && keyOpener != nil
        guard openKeys || work.sealed else { return DecryptionReport() }
        return try pool.write { db in
            if openKeys, let keyOpener { try EventStore.openKeyDeliveries(db: db, opener: keyOpener, receivedMs: receivedMs) }
            return try EventStore.decryptPending(db: db, receivedMs: receivedMs)
        }
    }

    /// Opens the accepted `m.room.key` and `m.room.key_forward` events not looked at yet that seal keys to the
    /// opener's device, and records each outcome: the keys, or why they could not be opened (also logged as
    /// rejected). Events for other devices are marked as seen, so each is parsed once.
    /// - Returns: how many keys were opened.
    @discardableResult
    static func openKeyDeliveries(db: Database, opener: KeyOpener, receivedMs: Int64) throws -> Int {
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT e.id, e.wire FROM events e WHERE (e.type = 'm.room.key' OR e.type = 'm.room.key_forward') AND e.status = 0
                        AND NOT EXISTS (SELECT 1 FROM key_deliveries d WHERE d.event_row = e.id)
                    ORDER BY e.id
                    """))
        var opened = 0
        let record = try db.cachedStatement(sql: "INSERT OR REPLACE INTO key_deliveries (event_row, problem) VALUES (?, ?)")
        for row in rows {
            let id: Int64 = row[0]
            let event = try Event.parse((row[1] as Data).bytes)
            if event.type == EventType.keyForward {
                opened += try openForward(event, row: id, db: db, opener: opener, record: record, receivedMs: receivedMs)
                continue
            }
            guard let content = event.content,
                case .roomKey(let keys) = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID),
                let sealed = keys.recipients.first(where: { $0.signingKey == opener.device })
            else {
                try record.execute(arguments: [id, EventStore.notForThisDevice])
                continue
            }
            switch opener.open(KeyDelivery(row: id, event: event, content: keys, sealed: sealed)) {
            case .success(let key):
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO room_keys (room_id, key_id, key, added_ms) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [event.roomID, key.keyID, Data(key.bytes), receivedMs])
                try record.execute(arguments: [id, nil])
                opened += 1
            case .failure(let error):
                let reason = "m.room.key: \(error.code.rawValue): \(error.message)"
                try record.execute(arguments: [id, reason])
                try EventStore.logRejection(db: db, event: event, reason: reason, receivedMs: receivedMs)
            }
        }
        return opened
    }

    /// Opens one `m.room.key_forward` if it is addressed to the opener's device and keeps the message keys it gives.
    static func openForward(
        _ event: Event, row id: Int64, db: Database, opener: KeyOpener, record: Statement, receivedMs: Int64
    ) throws -> Int {
        guard let content = event.content,
            case .keyForward(let forward) = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID),
            forward.recipient == opener.device
        else {
            try record.execute(arguments: [id, "not for this device"])
            return 0
        }
        switch opener.openForward(event, forward) {
        case .success(let keys):
            for key in keys {
                // One candidate per forwarding device: a later forward from the same device replaces its earlier one.
                try db.cachedStatement(
                    sql: """
                        INSERT OR REPLACE INTO message_keys (room_id, sender_key, seq, forwarder_key, key, added_ms) VALUES (?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [event.roomID, key.position.senderKey, key.position.seq, event.senderKey, Data(key.key.bytes), receivedMs])
            }
            try record.execute(arguments: [id, nil])
            return keys.count
        case .failure(let error):
            let reason = "m.room.key_forward: \(error.code.rawValue): \(error.message)"
            try record.execute(arguments: [id, reason])
            try EventStore.logRejection(db: db, event: event, reason: reason, receivedMs: receivedMs)
            return 0
        }
    }

    static func logRejection(db: Database, event: Event, reason: String, receivedMs: Int64) throws {
        try db.execute(
            sql: "INSERT INTO rejected_events (received_ms, room_id, event_id, hash, reason, excerpt) VALUES (?, ?, ?, NULL, ?, ?)",
            arguments: [receivedMs, event.roomID, event.eventID, reason, Data(event.stripped().wireBytes())])
    }

    // MARK: Decryption

    /// Opens every accepted, unredacted sealed event whose key this device holds and has not been opened yet.
    /// Content that does not open, or opens to something not allowed, is logged as rejected and never shown.
    ///
    /// Each pass looks only at sealed events stored since the last pass and at those waiting for a key that has
    /// since arrived, so its cost does not grow with the room's history. ``hasDecryptionWork()`` tells whether a pass
    /// would find anything without a write transaction.
    /// - Parameter stored: sealed events the calling batch has just stored, by row: opened without reading them back
    ///   (or parsing their content again, when the batch judged it).
    static func decryptPending(db: Database, receivedMs: Int64, stored: [Int64: StoredSealed] = [:]) throws -> DecryptionReport {
        do {
            var report = DecryptionReport()
            var keysByRoom: [String: [String: RoomKey]] = [:]
            let indexedUpTo = try EventStore.searchIndexedUpTo(db)
            let scannedUpTo = try Int64.fetchOne(db.cachedStatement(sql: "SELECT scanned_up_to FROM decrypt_state")) ?? 0
            let newest = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM events")) ?? 0
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT id, status, redacted, room_id, 0, sender_key, seq FROM events WHERE type = 'm.room.encrypted' AND id > ? AND id <= ?
                            AND NOT EXISTS (SELECT 1 FROM plaintexts p WHERE p.event_row = events.id)
                        UNION ALL
                        SELECT e.id, e.status, e.redacted, e.room_id, 1, e.sender_key, e.seq FROM sealed_waiting w CROSS JOIN events e ON e.id = w.event_row
                            WHERE EXISTS (SELECT 1 FROM room_keys k WHERE k.room_id = w.room_id AND k.key_id = w.key_id)
                                OR EXISTS (SELECT 1 FROM message_keys m WHERE m.room_id = e.room_id AND m.sender_key = e.sender_key AND m.seq = e.seq)
                        ORDER BY 1
                        """), arguments: [scannedUpTo, newest])
            // Parsing and opening run on every core; the store's writes stay on this thread.
            enum Outcome {
                case skip
                case wait(roomID: String, keyID: String)
                /// Waits, and the keys forwarded for it go: none is the one its content names.
                case waitDroppingKeys(roomID: String, keyID: String, position: ChainPosition)
                case opened(roomID: String, type: String, content: [UInt8], parsed: EventContent, keyID: String, readerKey: String)
                case failed(Event, reason: String)
            }
            var collected: [(event: Event?, sealed: EncryptedContent?, wire: [UInt8], accepted: Bool, messageKeys: [MessageKey])] = []
            collected.reserveCapacity(rows.count)
            let wireOf = try db.cachedStatement(sql: "SELECT wire FROM events WHERE id = ?")
            for row in rows {
                let roomID: String = row[3]
                if keysByRoom[roomID] == nil { keysByRoom[roomID] = try EventStore.roomKeys(db: db, roomID: roomID) }
                let id: Int64 = row[0]
                let accepted = (row[1] as Int) == EventStatus.accepted.rawValue && !(row[2] as Bool)
                // Keys forwarded for this one event; only looked up for events that waited (new ones rarely have any).
                let messageKeys =
                    (row[4] as Bool)
                    ? try EventStore.forwardedMessageKeys(db: db, roomID: roomID, position: ChainPosition(senderKey: row[5], seq: row[6])) : []
                if let known = stored[id] {
                    collected.append((known.event, known.content, [], accepted, messageKeys))
                } else {
                    collected.append((nil, nil, try Data.fetchOne(wireOf, arguments: [id])?.bytes ?? [], accepted, messageKeys))
                }
            }
            let keys = keysByRoom
            let inputs = collected
            let storage = UnsafeMutableBufferPointer<Outcome>.allocate(capacity: inputs.count)
            storage.initialize(repeating: .skip)
            defer {
                storage.deinitialize()
                storage.deallocate()
            }
            let outcomes = SendableBuffer(storage)
            let workers = min(EventStore.cores, max(1, inputs.count / 64))
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for index in stride(from: worker, to: inputs.count, by: workers) {
                    guard let event = inputs[index].event ?? (try? Event.parse(inputs[index].wire)), let content = event.content,
                        let sealed = inputs[index].sealed
                            ?? {
                                if case .encrypted(let parsed) = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID) {
                                    parsed
                                } else {
                                    nil
                                }
                            }()
                    else { continue }
                    // Not accepted (yet: it may be judged again) or no key: it waits. Of the keys forwarded for it, only
                    // the one its message_key_id names is tried; the others were garbage, and are dropped.
                    let forwarded = inputs[index].messageKeys
                    let key =
                        keys[event.roomID]?[sealed.keyID].map(SealingKey.room)
                        ?? forwarded.first { $0.id == sealed.messageKeyID }.map(SealingKey.message)
                    guard inputs[index].accepted, let key else {
                        outcomes.buffer[index] =
                            inputs[index].accepted && !forwarded.isEmpty
                            ? .waitDroppingKeys(roomID: event.roomID, keyID: sealed.keyID, position: ChainPosition(event))
                            : .wait(roomID: event.roomID, keyID: sealed.keyID)
                        continue
                    }
                    switch EventStore.openSealed(sealed, of: event, key: key) {
                    case .success(let (type, inner, parsed)):
                        outcomes.buffer[index] = .opened(
                            roomID: event.roomID, type: type, content: CanonicalJSON.encode(.object(inner)), parsed: parsed, keyID: sealed.keyID,
                            readerKey: event.senderKey)
                    case .failure(let problem):
                        outcomes.buffer[index] = .failed(event, reason: problem.reason)
                    }
                }
            }
            var seals: [String: (roomID: String, count: Int)] = [:]
            for (index, row) in rows.enumerated() {
                let id: Int64 = row[0]
                let wasWaiting: Bool = row[4]
                func stopWaiting() throws {
                    if wasWaiting { try db.cachedStatement(sql: "DELETE FROM sealed_waiting WHERE event_row = ?").execute(arguments: [id]) }
                }
                switch storage[index] {
                case .skip:
                    try stopWaiting()
                case .wait(let roomID, let keyID):
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO sealed_waiting (event_row, room_id, key_id) VALUES (?, ?, ?)").execute(arguments: [
                        id, roomID, keyID,
                    ])
                case .waitDroppingKeys(let roomID, let keyID, let position):
                    try db.cachedStatement(sql: "INSERT OR IGNORE INTO sealed_waiting (event_row, room_id, key_id) VALUES (?, ?, ?)").execute(arguments: [
                        id, roomID, keyID,
                    ])
                    try db.cachedStatement(sql: "DELETE FROM message_keys WHERE room_id = ? AND sender_key = ? AND seq = ?")
                        .execute(arguments: [roomID, position.senderKey, position.seq])
                case .opened(let roomID, let type, let content, let parsed, let keyID, let readerKey):
                    let target = parsed.relationTarget
                    switch parsed {
                    case .receipt(let kind, _, let heads):
                        try EventStore.recordReceiptHeads(db, roomID: roomID, receiptRow: id, readerKey: readerKey, kind: kind, heads: heads)
                    case .message(_, _, _?, _, _):
                        try EventStore.recordFileMessage(db, row: id, roomID: roomID)
                    default: break
                    }
                    seals[keyID, default: (roomID, 0)].count += 1
                    try stopWaiting()
                    try db.cachedStatement(sql: "INSERT OR REPLACE INTO plaintexts (event_row, room_id, type, content, target_event_id) VALUES (?, ?, ?, ?, ?)")
                        .execute(arguments: [id, roomID, type, Data(content), target])
                    report.decrypted += 1
                    if type == EventType.message, id <= indexedUpTo { try EventStore.index(db: db, messageRowID: id) }
                    if type == EventType.edit, let target {
                        for targetRow in try EventStore.messageRows(db: db, eventID: target) where targetRow <= indexedUpTo {
                            try EventStore.index(db: db, messageRowID: targetRow)
                        }
                    }
                case .failed(let event, let reason):
                    try stopWaiting()
                    try db.cachedStatement(sql: "INSERT OR REPLACE INTO plaintexts (event_row, room_id, problem) VALUES (?, ?, ?)").execute(arguments: [
                        id, event.roomID, reason,
                    ])
                    try EventStore.logRejection(db: db, event: event, reason: reason, receivedMs: receivedMs)
                    report.failed.append((event.eventID, reason))
                }
            }
            // Seals under each key, by every device as far as this node has seen: the room's nonces share one space.
            for (keyID, entry) in seals {
                try db.cachedStatement(sql: "UPDATE room_keys SET seals = seals + ? WHERE room_id = ? AND key_id = ?").execute(arguments: [
                    entry.count, entry.roomID, keyID,
                ])
            }
            try db.cachedStatement(sql: "UPDATE decrypt_state SET scanned_up_to = ?").execute(arguments: [max(scannedUpTo, newest)])
            report.waitingForKey = try Int.fetchOne(db.cachedStatement(sql: "SELECT COUNT(*) FROM sealed_waiting")) ?? 0
            return report
        }
    }

    /// Read once: `ProcessInfo` asks the system (files under /sys and /proc) on every call.
    static let cores = ProcessInfo.processInfo.activeProcessorCount

    /// Rows of the messages (plain or sealed) carrying `eventID`: one, unless another device copied the id.
    static func messageRows(db: Database, eventID: String) throws -> [Int64] {
        try Int64.fetchAll(
            db.cachedStatement(sql: "SELECT id FROM events WHERE event_id = ? AND type IN ('m.room.message', 'm.room.encrypted')"),
            arguments: [eventID])
    }

    /// What opens a sealed event: its epoch's key, or (v2 content) a key forwarded for it alone.
    enum SealingKey {
        case room(RoomKey)
        case message(MessageKey)
    }

    /// Opens sealed content and checks the inner event: a type that may be sealed, content valid for its type.
    static func openSealed(
        _ sealed: EncryptedContent, of event: Event, key: SealingKey
    ) -> Result<(String, JSONObject, EventContent), SealedProblem> {
        do {
            let associatedData = RoomCipher.associatedData(of: event)
            let (type, inner) =
                switch key {
                case .room(let roomKey): try RoomCipher.open(sealed, key: roomKey, associatedData: associatedData)
                case .message(let messageKey): try RoomCipher.open(sealed, messageKey: messageKey, associatedData: associatedData)
                }
            let parsed = try EventContent.parse(type: type, content: inner, roomID: event.roomID)
            if parsed.relationTarget == event.eventID { return .failure(SealedProblem(reason: "sealed \(type): an event cannot refer to itself")) }
            return .success((type, inner, parsed))
        } catch let error as EncryptionError {
            return .failure(SealedProblem(reason: "m.room.encrypted: \(error.code.rawValue): \(error.message)"))
        } catch {
            return .failure(SealedProblem(reason: "sealed content: \(error)"))
        }
    }

    struct SealedProblem: Error {
        let reason: String
    }

    /// What `key_deliveries` records for a key event that seals nothing to this device.
    static let notForThisDevice = "not for this device"

    /// Whether this device could open each of the accepted sealed (`m.room.encrypted`) and key (`m.room.key`)
    /// events named, by event id. Key events that give this device nothing, and events not looked at yet, are
    /// left out.
    public func openingOutcomes(eventIDs: [String]) throws -> [String: OpeningOutcome] {
        try pool.read { db in
            var outcomes: [String: OpeningOutcome] = [:]
            for chunk in eventIDs.chunks(of: inListChunk) {
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT e.event_id, e.type, p.type IS NOT NULL, p.problem, w.event_row IS NOT NULL, d.event_row IS NOT NULL, d.problem
                        FROM events e
                        LEFT JOIN plaintexts p ON p.event_row = e.id
                        LEFT JOIN sealed_waiting w ON w.event_row = e.id
                        LEFT JOIN key_deliveries d ON d.event_row = e.id
                        WHERE e.event_id IN (\(placeholders(chunk.count))) AND e.status = 0 AND e.type IN ('m.room.encrypted', 'm.room.key')
                        """, arguments: StatementArguments(Array(chunk)))
                for row in rows {
                    let eventID: String = row[0]
                    if (row[1] as String) == EventType.roomKey {
                        guard row[5] as Bool else { continue }
                        let problem: String? = row[6]
                        if problem == EventStore.notForThisDevice { continue }
                        outcomes[eventID] = problem.map(OpeningOutcome.failed) ?? .opened
                    } else if row[2] as Bool {
                        outcomes[eventID] = .opened
                    } else if let problem = row[3] as String? {
                        outcomes[eventID] = .failed(problem)
                    } else if row[4] as Bool {
                        outcomes[eventID] = .waitingForKey
                    }
                }
            }
            return outcomes
        }
    }

    /// How many sealed events of `roomID` wait for a key this device does not hold (as of the last pass).
    public func undecryptableCount(roomID: String) throws -> Int {
        try pool.read { db in
            try Int.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT COUNT(*) FROM sealed_waiting w JOIN events e ON e.id = w.event_row
                        WHERE w.room_id = ? AND e.status = 0 AND e.redacted = 0
                        """), arguments: [roomID]) ?? 0
        }
    }

    /// `event` as the timeline and search see it: a sealed event this device opened shows its inner type and
    /// content; anything else is itself.
    static func decryptedView(db: Database, event: Event, row: Int64) throws -> Event {
        guard event.type == EventType.encrypted else { return event }
        guard
            let found = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT type, content FROM plaintexts WHERE event_row = ? AND type IS NOT NULL"), arguments: [row])
        else { return event }
        return try plaintextView(of: event, type: found[0], content: (found[1] as Data).bytes)
    }

    static func plaintextView(of event: Event, type: String, content: [UInt8]) throws -> Event {
        guard case .object(let inner) = try JSONParser().parse(content) else {
            throw StoreError(.damaged, "A decrypted message in the store is not a JSON object.")
        }
        var view = event
        view.type = type
        view.content = inner
        // The priority travels on the envelope (§14.3): the view shows it where a plain message has it.
        if type == EventType.message, let priority = event.content?["priority"] { view.content?["priority"] = priority }
        return view
    }
}
