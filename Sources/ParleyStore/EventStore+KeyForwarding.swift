import Foundation
import GRDB
import ParleyCore

/// A sealed event as key forwarding sees it: where it is, where it sorts, and what it is sealed with.
public struct SealedEventInfo: Sendable, Equatable {
    public var position: ChainPosition
    public var order: EventOrder
    public var keyID: String
    public var algorithm: RoomCipher.Algorithm
}

/// An accepted `m.room.key_request` of another device that this device has not answered yet.
public struct KeyRequestRecord: Sendable {
    public var row: Int64
    /// The requesting device's signing key.
    public var requester: String
    public var timestampMs: Int64
    public var positions: [ChainPosition]
}

/// What this node keeps to forward keys and ask for them (docs/PROTOCOL.md §14.10): message keys forwarded to it, what
/// it forwarded and asked for, and which requests it answered. All of it is local bookkeeping; none of it is synced.
extension EventStore {
    static func registerKeyForwardingMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v9-key-forwarding") { db in
            try db.execute(
                sql: """
                    CREATE TABLE message_keys (
                        room_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        forwarder_key TEXT NOT NULL,
                        key BLOB NOT NULL,
                        added_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, sender_key, seq, forwarder_key)
                    );
                    CREATE TABLE keys_forwarded (
                        room_id TEXT NOT NULL,
                        recipient_key TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        forwarded_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, recipient_key, sender_key, seq)
                    );
                    CREATE TABLE keys_requested (
                        room_id TEXT NOT NULL,
                        sender_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        requested_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, sender_key, seq)
                    );
                    CREATE TABLE key_requests_answered (event_row INTEGER PRIMARY KEY);
                    CREATE TABLE key_exchange_state (room_id TEXT PRIMARY KEY, state_version INTEGER NOT NULL);
                    CREATE INDEX events_key_requests ON events (room_id, id) WHERE type = 'm.room.key_request';
                    CREATE INDEX events_key_forwards ON events (id) WHERE type = 'm.room.key_forward';
                    CREATE INDEX events_sealed_by_sender ON events (room_id, sender_key, seq) WHERE type = 'm.room.encrypted';
                    """)
        }
    }

    /// Accepted sealed events of `roomID`: those of device `senderKey`, or those at `positions`.
    public func sealedEvents(roomID: String, sentBy senderKey: String) throws -> [SealedEventInfo] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT wire FROM events WHERE room_id = ? AND sender_key = ? AND type = 'm.room.encrypted' AND status = 0 AND redacted = 0
                        ORDER BY seq
                        """), arguments: [roomID, senderKey]
            ).compactMap { try EventStore.sealedInfo(wire: ($0[0] as Data).bytes) }
        }
    }

    public func sealedEvents(roomID: String, at positions: [ChainPosition]) throws -> [SealedEventInfo] {
        try pool.read { db in
            try positions.compactMap { position in
                try Data.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT wire FROM events WHERE room_id = ? AND sender_key = ? AND seq = ? AND type = 'm.room.encrypted' AND status = 0
                            """), arguments: [roomID, position.senderKey, position.seq]
                ).flatMap { try EventStore.sealedInfo(wire: $0.bytes) }
            }
        }
    }

    static func sealedInfo(wire: [UInt8]) throws -> SealedEventInfo? {
        let event = try Event.parse(wire)
        guard let content = event.content,
            case .encrypted(let sealed)? = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID)
        else { return nil }
        return SealedEventInfo(position: ChainPosition(event), order: EventOrder(event), keyID: sealed.keyID, algorithm: sealed.algorithm)
    }

    /// The message keys of the sealed events at `positions` that this node can give: derived from an epoch key it
    /// holds (v2 content only), or forwarded to it and named by the event's `message_key_id` (never a key merely
    /// forwarded, which might be anyone's garbage).
    public func messageKeys(roomID: String, at positions: [ChainPosition]) throws -> [ForwardedKey] {
        try pool.read { db in
            let roomKeys = try EventStore.roomKeys(db: db, roomID: roomID)
            return try positions.compactMap { position -> ForwardedKey? in
                guard
                    let wire = try Data.fetchOne(
                        db.cachedStatement(sql: "SELECT wire FROM events WHERE room_id = ? AND sender_key = ? AND seq = ? AND type = 'm.room.encrypted'"),
                        arguments: [roomID, position.senderKey, position.seq])
                else { return nil }
                let event = try Event.parse(wire.bytes)
                guard let content = event.content,
                    case .encrypted(let sealed)? = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID),
                    sealed.algorithm == .messageKey
                else { return nil }
                if let key = roomKeys[sealed.keyID] {
                    return ForwardedKey(position: position, key: MessageKey(roomKey: key, associatedData: RoomCipher.associatedData(of: event)))
                }
                return try EventStore.forwardedMessageKeys(db: db, roomID: roomID, position: position).first { $0.id == sealed.messageKeyID }
                    .map { ForwardedKey(position: position, key: $0) }
            }
        }
    }

    /// The keys forwarded to this node for the sealed event at `position`, one per device that forwarded one: as many
    /// candidates as forwarders, since any member may forward garbage and only the event's `message_key_id` tells.
    static func forwardedMessageKeys(db: Database, roomID: String, position: ChainPosition) throws -> [MessageKey] {
        try Data.fetchAll(
            db.cachedStatement(sql: "SELECT key FROM message_keys WHERE room_id = ? AND sender_key = ? AND seq = ? ORDER BY forwarder_key"),
            arguments: [roomID, position.senderKey, position.seq]
        ).compactMap { try? MessageKey(bytes: $0.bytes) }
    }

    /// Which sealed events this node has forwarded the keys of to device `recipient`.
    public func forwardedPositions(roomID: String, recipient: String) throws -> Set<ChainPosition> {
        try pool.read { db in
            Set(
                try Row.fetchAll(
                    db.cachedStatement(sql: "SELECT sender_key, seq FROM keys_forwarded WHERE room_id = ? AND recipient_key = ?"),
                    arguments: [roomID, recipient]
                ).map { ChainPosition(senderKey: $0[0], seq: $0[1]) })
        }
    }

    public func recordForwarded(roomID: String, recipient: String, positions: [ChainPosition], atMs: Int64) throws {
        try pool.write { db in
            for position in positions {
                try db.cachedStatement(
                    sql: "INSERT OR IGNORE INTO keys_forwarded (room_id, recipient_key, sender_key, seq, forwarded_ms) VALUES (?, ?, ?, ?, ?)"
                )
                .execute(arguments: [roomID, recipient, position.senderKey, position.seq, atMs])
            }
        }
    }

    /// Accepted key requests of other devices in `roomID` that this node has not answered.
    public func unansweredKeyRequests(roomID: String, excluding device: String) throws -> [KeyRequestRecord] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT e.id, e.wire FROM events e WHERE e.room_id = ? AND e.type = 'm.room.key_request' AND e.status = 0 AND e.sender_key != ?
                            AND NOT EXISTS (SELECT 1 FROM key_requests_answered a WHERE a.event_row = e.id)
                        ORDER BY e.id
                        """), arguments: [roomID, device]
            ).compactMap { row in
                let event = try Event.parse((row[1] as Data).bytes)
                guard let content = event.content,
                    case .keyRequest(let request)? = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID)
                else { return nil }
                return KeyRequestRecord(row: row[0], requester: event.senderKey, timestampMs: event.timestampMs, positions: request.events)
            }
        }
    }

    public func markKeyRequestsAnswered(rows: [Int64]) throws {
        try pool.write { db in
            for row in rows { try db.cachedStatement(sql: "INSERT OR IGNORE INTO key_requests_answered (event_row) VALUES (?)").execute(arguments: [row]) }
        }
    }

    /// Accepted sealed events of `roomID` this device cannot open yet (as of the last decryption pass), with when it
    /// last asked for their keys.
    public func undecryptableEvents(roomID: String) throws -> [(event: SealedEventInfo, requestedMs: Int64?)] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT e.wire, r.requested_ms FROM sealed_waiting w JOIN events e ON e.id = w.event_row
                            LEFT JOIN keys_requested r ON r.room_id = e.room_id AND r.sender_key = e.sender_key AND r.seq = e.seq
                        WHERE w.room_id = ? AND e.status = 0 AND e.redacted = 0
                        ORDER BY e.id
                        """), arguments: [roomID]
            ).compactMap { row in try EventStore.sealedInfo(wire: (row[0] as Data).bytes).map { ($0, row[1]) } }
        }
    }

    public func recordRequested(roomID: String, positions: [ChainPosition], atMs: Int64) throws {
        try pool.write { db in
            for position in positions {
                try db.cachedStatement(sql: "INSERT OR REPLACE INTO keys_requested (room_id, sender_key, seq, requested_ms) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [roomID, position.senderKey, position.seq, atMs])
            }
        }
    }

    /// The room state version for which this node last shared keys with every member device: nothing new to share
    /// until the state changes (a device joins or is invited with its exchange key).
    public func keyExchangeVersion(roomID: String) throws -> Int64? {
        try pool.read { db in
            try Int64.fetchOne(db.cachedStatement(sql: "SELECT state_version FROM key_exchange_state WHERE room_id = ?"), arguments: [roomID])
        }
    }

    public func setKeyExchangeVersion(_ version: Int64, roomID: String) throws {
        try pool.write { db in
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO key_exchange_state (room_id, state_version) VALUES (?, ?)").execute(arguments: [
                roomID, version,
            ])
        }
    }
}
