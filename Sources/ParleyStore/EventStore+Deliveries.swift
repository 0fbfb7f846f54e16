import Foundation
import GRDB
import ParleyCore
import ParleySync

// Receipts' heads (docs/PROTOCOL.md §7.10), kept by chain and place so that "who holds or has read this event" is an
// index range, whichever way the receipt travelled (plain, or sealed and opened later).

/// One reader device's receipt that covers an event.
public struct ReceiptCoverage: Sendable, Equatable {
    public var readerID: String
    public var readerKey: String
    public var kind: ReceiptKind
    /// The earliest covering receipt of this kind: its event id, the time it claims and its place in its chain.
    public var receiptEventID: String
    public var timestampMs: Int64
    public var receiptPosition: ChainPosition
    /// The seq its head on the event's chain names (at or after the event's).
    public var headSeq: Int64
}

extension EventStore {
    /// Whether a row of `events` is a receipt, plain or sealed and opened.
    static let isReceipt = """
        (type = 'm.receipt' OR (type = 'm.room.encrypted' AND EXISTS (SELECT 1 FROM plaintexts p WHERE p.event_row = events.id AND p.type = 'm.receipt')))
        """

    static func registerReceiptHeadsMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v13-receipt-heads") { db in
            try db.execute(
                sql: """
                    CREATE TABLE receipt_heads (
                        room_id TEXT NOT NULL,
                        chain_key TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        hash TEXT NOT NULL,
                        receipt_row INTEGER NOT NULL,
                        reader_key TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        PRIMARY KEY (room_id, chain_key, seq, receipt_row)
                    ) WITHOUT ROWID;
                    CREATE INDEX receipt_heads_reader ON receipt_heads (room_id, reader_key, chain_key, seq);
                    CREATE TABLE transport_send_failures (
                        transport TEXT NOT NULL,
                        room_id TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        first_ms INTEGER NOT NULL,
                        reason TEXT NOT NULL,
                        PRIMARY KEY (transport, room_id)
                    );
                    """)
        }
    }

    /// Keeps the heads of the receipt stored at `receiptRow`; the receipt's verdict is looked up when they are read.
    static func recordReceiptHeads(_ db: Database, roomID: String, receiptRow: Int64, readerKey: String, kind: ReceiptKind, heads: [ReceiptHead])
        throws
    {
        guard !heads.isEmpty else { return }
        let statement = try db.cachedStatement(
            sql: "INSERT OR IGNORE INTO receipt_heads (room_id, chain_key, seq, hash, receipt_row, reader_key, kind) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for head in heads {
            try statement.execute(arguments: [roomID, head.position.senderKey, head.position.seq, head.hash, receiptRow, readerKey, kind.rawValue])
        }
    }

    /// The accepted receipts whose heads cover the chained event at `position`, the earliest of each reader device
    /// and kind. A head counts only if its hash is that of the event this node holds at its place: a receipt about a
    /// fork or a forged event covers nothing here.
    public func receiptsCovering(roomID: String, position: ChainPosition) throws -> [ReceiptCoverage] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT r.sender_id, r.sender_key, h.kind, r.event_id, MIN(r.timestamp_ms), r.seq, h.seq FROM receipt_heads h
                            JOIN events c ON c.room_id = h.room_id AND c.sender_key = h.chain_key AND c.seq = h.seq AND c.hash = h.hash
                            JOIN events r ON r.id = h.receipt_row
                        WHERE h.room_id = ? AND h.chain_key = ? AND h.seq >= ? AND r.status = 0 AND r.redacted = 0
                        GROUP BY r.sender_key, h.kind ORDER BY r.sender_id, r.sender_key, h.kind
                        """), arguments: [roomID, position.senderKey, position.seq]
            ).compactMap { row in
                ReceiptKind(rawValue: row[2]).map {
                    ReceiptCoverage(
                        readerID: row[0], readerKey: row[1], kind: $0, receiptEventID: row[3], timestampMs: row[4],
                        receiptPosition: ChainPosition(senderKey: row[1], seq: row[5]), headSeq: row[6])
                }
            }
        }
    }

    /// Per reader device and kind, the furthest place in `chainKey`'s chain its accepted receipts cover, counting
    /// only heads at or after `fromSeq`: enough to mark every event of the chain from `fromSeq` on.
    public func chainCoverage(roomID: String, chainKey: String, fromSeq: Int64) throws -> [(readerKey: String, kind: ReceiptKind, seq: Int64)] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT h.reader_key, h.kind, MAX(h.seq) FROM receipt_heads h
                            JOIN events c ON c.room_id = h.room_id AND c.sender_key = h.chain_key AND c.seq = h.seq AND c.hash = h.hash
                            JOIN events r ON r.id = h.receipt_row
                        WHERE h.room_id = ? AND h.chain_key = ? AND h.seq >= ? AND r.status = 0 AND r.redacted = 0
                        GROUP BY h.reader_key, h.kind
                        """), arguments: [roomID, chainKey, fromSeq]
            ).compactMap { row in ReceiptKind(rawValue: row[1]).map { (row[0], $0, row[2]) } }
        }
    }

    /// The heads a new receipt of `readerKey` should list: per chain of another device, its newest chained event
    /// (at or before `upTo` in the room's order, if given), where that is further than what this device's earlier
    /// receipts cover (a read receipt also covers for delivery). At most ``ReceiptHead/maxPerReceipt``, furthest
    /// behind first.
    public func receiptHeads(roomID: String, readerKey: String, kind: ReceiptKind, upTo: EventOrder?) throws -> [ReceiptHead] {
        try pool.read { db in
            var sql = "SELECT sender_key, MAX(seq), hash FROM events WHERE room_id = ? AND sender_key != ?"
            var arguments: StatementArguments = [roomID, readerKey]
            if let upTo {
                sql += " AND (timestamp_ms, seq, event_id, sender_key) <= (?, ?, ?, ?)"
                arguments += [upTo.timestampMs, upTo.seq, upTo.eventID, upTo.senderKey]
            }
            let held = try Row.fetchAll(db, sql: sql + " GROUP BY sender_key", arguments: arguments)
            let kinds = kind == .read ? "'read'" : "'read', 'delivered'"
            let covered = try db.cachedStatement(
                sql: "SELECT MAX(seq) FROM receipt_heads WHERE room_id = ? AND reader_key = ? AND chain_key = ? AND kind IN (\(kinds))")
            var heads: [(head: ReceiptHead, behind: Int64)] = []
            for row in held {
                let head = ReceiptHead(position: ChainPosition(senderKey: row[0], seq: row[1]), hash: row[2])
                let done = try Int64.fetchOne(covered, arguments: [roomID, readerKey, head.position.senderKey]) ?? 0
                if head.position.seq > done { heads.append((head, head.position.seq - done)) }
            }
            return heads.sorted { ($0.behind, $0.head.position.senderKey) > ($1.behind, $1.head.position.senderKey) }
                .prefix(ReceiptHead.maxPerReceipt).map(\.head)
        }
    }

    /// Whether others' messages, edits or reactions (plain, or sealed and opened) arrived in `roomID` that no receipt
    /// of this device covers: what makes a delivered receipt worth sending. Receipts do not count, so receipts never
    /// answer receipts.
    public func hasUnacknowledgedContent(roomID: String, readerKey: String) throws -> Bool {
        try pool.read { db in
            // Stored after this device's last delivered receipt, and covered by none of its receipts: a read receipt
            // stored later may cover only older events (the reader's position), so it proves nothing of newer ones.
            let since =
                try Int64.fetchOne(
                    db.cachedStatement(
                        sql: "SELECT MAX(receipt_row) FROM receipt_heads WHERE room_id = ? AND reader_key = ? AND kind = 'delivered'"),
                    arguments: [roomID, readerKey]) ?? 0
            return try Bool.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT EXISTS (SELECT 1 FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id
                            WHERE e.room_id = ? AND e.id > ? AND e.sender_key != ? AND e.status = 0
                            AND (e.type IN ('m.room.message', 'm.room.edit', 'm.room.reaction')
                                OR (e.type = 'm.room.encrypted' AND p.type IN ('m.room.message', 'm.room.edit', 'm.room.reaction')))
                            AND NOT EXISTS (SELECT 1 FROM receipt_heads h
                                WHERE h.room_id = e.room_id AND h.reader_key = ? AND h.chain_key = e.sender_key AND h.seq >= e.seq))
                        """), arguments: [roomID, since, readerKey, readerKey]) == true
        }
    }
}

extension EventStore {
    /// The newest event of `roomID` in the room's order (any verdict), if any.
    public func newestEvent(roomID: String) throws -> EventOrder? {
        try pool.read { db in
            try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT timestamp_ms, seq, event_id, sender_key FROM events WHERE room_id = ?
                        ORDER BY timestamp_ms DESC, seq DESC, event_id DESC, sender_key DESC LIMIT 1
                        """), arguments: [roomID]
            ).map { EventOrder(timestampMs: $0[0], seq: $0[1], eventID: $0[2], senderKey: $0[3]) }
        }
    }

    /// When this device's newest receipt in `roomID` (plain or sealed) was signed, if it sent any.
    public func lastReceiptMs(roomID: String, readerKey: String) throws -> Int64? {
        try pool.read { db in
            try Int64.fetchOne(
                db.cachedStatement(
                    sql: "SELECT MAX(timestamp_ms) FROM events WHERE room_id = ? AND sender_key = ? AND \(EventStore.isReceipt)"),
                arguments: [roomID, readerKey])
        }
    }

    /// The transports that confirmed holding this device's event at `seq` in `roomID`, with when, earliest first.
    public func confirmations(roomID: String, seq: Int64) throws -> [(transport: String, confirmedMs: Int64)] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT transport, MIN(confirmed_ms) FROM transport_outbox WHERE room_id = ? AND first_seq <= ? AND last_seq >= ?
                            AND confirmed_ms IS NOT NULL GROUP BY transport ORDER BY 2
                        """), arguments: [roomID, seq, seq]
            ).map { ($0[0], $0[1]) }
        }
    }
}

/// A transport failing to take this device's events of a room: attempts in a row, since when, and the last reason.
public struct SendFailure: Sendable, Equatable {
    public var transport: String
    public var attempts: Int
    public var firstMs: Int64
    public var reason: String
    /// The error's code (`io`, `bucket`, `relay_refused`, …): one of few values, for metrics.
    public var code: String
}

extension EventStore {
    /// Failures keep their error's code beside its text: metrics count by the code, which takes few values.
    static func registerSendFailureCodesMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v16-send-failure-codes") { db in
            try db.execute(sql: "ALTER TABLE transport_send_failures ADD COLUMN code TEXT NOT NULL DEFAULT 'unknown'")
        }
    }

    /// Records a failed attempt of `transport` to send this device's events of `roomID`.
    public func recordSendFailure(_ transport: TransportName, roomID: String, reason: String, code: String, nowMs: Int64) throws {
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO transport_send_failures (transport, room_id, attempts, first_ms, reason, code) VALUES (?, ?, 1, ?, ?, ?)
                    ON CONFLICT (transport, room_id) DO UPDATE SET attempts = attempts + 1, reason = excluded.reason, code = excluded.code
                    """, arguments: [transport.rawValue, roomID, nowMs, reason, code])
        }
    }

    /// Forgets the failures of `transport` in `roomID`: it sent again.
    public func clearSendFailure(_ transport: TransportName, roomID: String) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM transport_send_failures WHERE transport = ? AND room_id = ?", arguments: [transport.rawValue, roomID])
        }
    }

    /// The transports failing to send this device's events of `roomID` now.
    public func sendFailures(roomID: String) throws -> [SendFailure] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(
                    sql: "SELECT transport, attempts, first_ms, reason, code FROM transport_send_failures WHERE room_id = ? ORDER BY transport"),
                arguments: [roomID]
            ).map { SendFailure(transport: $0[0], attempts: $0[1], firstMs: $0[2], reason: $0[3], code: $0[4]) }
        }
    }
}

extension EventStore {
    /// What the receipt stored at `receiptRow` newly covers of `chainKey`'s messages (plain, or sealed and opened or
    /// not): the ids of those beyond what its device's earlier receipts of the same kind covered (a read receipt
    /// counts as delivered too), with the receipt's kind, device and time. `nil` when it covers none.
    public func newlyCovered(receiptRow: Int64, chainKey: String) throws -> (
        kind: ReceiptKind, readerID: String, readerKey: String, atMs: Int64, eventIDs: [String]
    )? {
        try pool.read { db in
            guard
                let receipt = try Row.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT h.kind, MAX(h.seq), r.sender_id, r.sender_key, r.timestamp_ms, r.room_id FROM receipt_heads h
                                JOIN events r ON r.id = h.receipt_row
                                JOIN events c ON c.room_id = h.room_id AND c.sender_key = h.chain_key AND c.seq = h.seq AND c.hash = h.hash
                            WHERE h.receipt_row = ? AND h.chain_key = ? AND r.status = 0
                            """), arguments: [receiptRow, chainKey]),
                let kindText = receipt[0] as String?, let kind = ReceiptKind(rawValue: kindText), let upTo = receipt[1] as Int64?
            else { return nil }
            let readerKey: String = receipt[3]
            let roomID: String = receipt[5]
            let kinds = kind == .read ? "'read'" : "'read', 'delivered'"
            let before =
                try Int64.fetchOne(
                    db,
                    sql: """
                        SELECT MAX(h.seq) FROM receipt_heads h
                            JOIN events r ON r.id = h.receipt_row
                            JOIN events c ON c.room_id = h.room_id AND c.sender_key = h.chain_key AND c.seq = h.seq AND c.hash = h.hash
                        WHERE h.room_id = ? AND h.reader_key = ? AND h.chain_key = ? AND h.kind IN (\(kinds)) AND h.receipt_row < ? AND r.status = 0
                        """, arguments: [roomID, readerKey, chainKey, receiptRow]) ?? 0
            guard upTo > before else { return nil }
            let eventIDs = try String.fetchAll(
                db,
                sql: """
                    SELECT e.event_id FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id
                    WHERE e.room_id = ? AND e.sender_key = ? AND e.seq > ? AND e.seq <= ?
                        AND (e.type = 'm.room.message' OR (e.type = 'm.room.encrypted' AND (p.type IS NULL OR p.type = 'm.room.message')))
                    ORDER BY e.seq
                    """, arguments: [roomID, chainKey, before, upTo])
            return eventIDs.isEmpty ? nil : (kind, receipt[2], readerKey, receipt[4], eventIDs)
        }
    }
}

/// A room's choices on this node: whether its read receipts are sent, and how far its user read here.
public struct ReadPreferences: Sendable, Equatable {
    /// Whether this device sends read receipts in the room (delivered receipts are always sent).
    public var sendsReadReceipts = true
    /// The newest event this user has seen here, as the UIs or `parley read` marked it.
    public var readMarker: String?
    /// Whether a read receipt up to ``readMarker`` waits for the room's pace.
    public var readReceiptWaiting = false

    public init() {}
}

extension EventStore {
    static func registerRoomPreferencesMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v14-room-preferences") { db in
            try db.execute(
                sql: """
                    CREATE TABLE room_preferences (
                        room_id TEXT PRIMARY KEY,
                        read_receipts INTEGER NOT NULL DEFAULT 1,
                        read_marker TEXT,
                        read_waiting INTEGER NOT NULL DEFAULT 0
                    )
                    """)
        }
    }

    public func readPreferences(roomID: String) throws -> ReadPreferences {
        try pool.read { db in try EventStore.readPreferences(db, roomID) }
    }

    static func readPreferences(_ db: Database, _ roomID: String) throws -> ReadPreferences {
        var preferences = ReadPreferences()
        if let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT read_receipts, read_marker, read_waiting FROM room_preferences WHERE room_id = ?"), arguments: [roomID])
        {
            preferences.sendsReadReceipts = row[0]
            preferences.readMarker = row[1]
            preferences.readReceiptWaiting = row[2]
        }
        return preferences
    }

    /// Replaces the room's preferences with what `change` makes of them, atomically.
    public func updateReadPreferences(roomID: String, _ change: (inout ReadPreferences) -> Void) throws {
        try pool.write { db in
            var preferences = try EventStore.readPreferences(db, roomID)
            change(&preferences)
            try db.execute(
                sql: "INSERT OR REPLACE INTO room_preferences (room_id, read_receipts, read_marker, read_waiting) VALUES (?, ?, ?, ?)",
                arguments: [roomID, preferences.sendsReadReceipts, preferences.readMarker, preferences.readReceiptWaiting])
        }
    }
}

extension EventStore {
    /// The events a delivery proof carries (docs/PROTOCOL.md §10.1), in the room's order: each chain from its start up
    /// to the furthest of its events the proof needs (the replayed events, state and room keys, up to the last event of
    /// `full` in the room's order; `full`; the events the plain events of `full` refer to; `through`), with content only
    /// for the replayed events and `full`.
    public func proofEvents(roomID: String, full: Set<ChainPosition>, through: [ChainPosition]) throws -> [[UInt8]] {
        try pool.read { db in
            var extents: [String: Int64] = [:]
            func reach(_ position: ChainPosition) { extents[position.senderKey] = max(extents[position.senderKey] ?? 0, position.seq) }
            // The state the replay needs is that before the last event carried in full: what came later cannot change
            // a verdict before it (§8.2).
            let place = try db.cachedStatement(
                sql: "SELECT timestamp_ms, seq, event_id, sender_key FROM events WHERE room_id = ? AND sender_key = ? AND seq = ?")
            let last = try full.compactMap { position in
                try Row.fetchOne(place, arguments: [roomID, position.senderKey, position.seq]).map {
                    EventOrder(timestampMs: $0[0], seq: $0[1], eventID: $0[2], senderKey: $0[3])
                }
            }.max()
            let replayed = EventType.replayedTypes.sorted()
            var replayedArguments = StatementArguments([roomID] + replayed)
            var before = ""
            if let last {
                before = " AND (timestamp_ms, seq, event_id, sender_key) <= (?, ?, ?, ?)"
                replayedArguments += [last.timestampMs, last.seq, last.eventID, last.senderKey]
            }
            for row in try Row.fetchAll(
                db,
                sql: "SELECT sender_key, MAX(seq) FROM events WHERE room_id = ? AND type IN (\(placeholders(replayed.count)))\(before) GROUP BY sender_key",
                arguments: replayedArguments)
            {
                reach(ChainPosition(senderKey: row[0], seq: row[1]))
            }
            for position in Array(full) + through { reach(position) }
            // The replay looks a plain event's relation target up (§8.2): the proof holds it, stripped.
            let target = try db.cachedStatement(sql: "SELECT target_event_id FROM events WHERE room_id = ? AND sender_key = ? AND seq = ?")
            let carriers = try db.cachedStatement(sql: "SELECT sender_key, seq FROM events WHERE room_id = ? AND event_id = ?")
            for position in full {
                guard let targetID = try String.fetchOne(target, arguments: [roomID, position.senderKey, position.seq]) else { continue }
                for row in try Row.fetchAll(carriers, arguments: [roomID, targetID]) { reach(ChainPosition(senderKey: row[0], seq: row[1])) }
            }
            let chain = try db.cachedStatement(sql: "SELECT seq, type, wire FROM events WHERE room_id = ? AND sender_key = ? AND seq <= ? ORDER BY seq")
            var events: [(order: EventOrder, wire: [UInt8])] = []
            for (senderKey, last) in extents {
                let rows = try Row.fetchCursor(chain, arguments: [roomID, senderKey, last])
                while let row = try rows.next() {
                    let wire = (row[2] as Data).bytes
                    let event = try Event.parse(wire)
                    let keeps = EventType.isReplayed(row[1]) || full.contains(ChainPosition(senderKey: senderKey, seq: row[0]))
                    events.append((EventOrder(event), keeps || event.isStripped ? wire : event.stripped().wireBytes()))
                }
            }
            return events.sorted { $0.order < $1.order }.map(\.wire)
        }
    }
}
