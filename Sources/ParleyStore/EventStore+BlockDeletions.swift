import Foundation
import GRDB
import ParleyCore
import ParleySync

// The blocks of redacted files that this node takes back: from its own block store at once, and from each
// transport of the room (a bucket's objects, a relay's copies) when that transport next runs.

extension EventStore {
    static func registerBlockDeletionsMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v18-block-deletions") { db in
            try db.execute(
                sql: """
                    CREATE TABLE block_deletions (
                        transport TEXT NOT NULL, room_id TEXT NOT NULL, block_id TEXT NOT NULL, tier INTEGER NOT NULL, added_ms INTEGER NOT NULL,
                        PRIMARY KEY (transport, room_id, block_id)
                    )
                    """)
        }
    }

    static func registerWhiteningMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v19-whitened-files") { db in
            try db.execute(sql: "ALTER TABLE room_preferences ADD COLUMN whitens_files INTEGER NOT NULL DEFAULT 0")
            try db.execute(sql: "ALTER TABLE sent_files ADD COLUMN whitened INTEGER NOT NULL DEFAULT 0")
        }
    }

    /// Whether this node shares files in `roomID` whitened (docs/PROTOCOL.md §16.7): off unless set.
    public func whitensFiles(roomID: String) throws -> Bool {
        try pool.read { db in
            try Bool.fetchOne(db.cachedStatement(sql: "SELECT whitens_files FROM room_preferences WHERE room_id = ?"), arguments: [roomID]) ?? false
        }
    }

    public func setWhitensFiles(roomID: String, _ whitens: Bool) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO room_preferences (room_id) VALUES (?)", arguments: [roomID])
            try db.execute(sql: "UPDATE room_preferences SET whitens_files = ? WHERE room_id = ?", arguments: [whitens, roomID])
        }
    }

    /// Whether an accepted, unredacted message (sealed ones once opened) shares the file with this root: in
    /// `roomID`, or in any room when `nil`.
    public func sharesFile(root: BlockID, roomID: String?) throws -> Bool {
        try sharedFiles(roomID: roomID).contains { $0.reference.root == root }
    }

    /// The files that accepted, unredacted messages (sealed ones once opened) share: in `roomID`, or in any room when
    /// `nil`.
    public func sharedFiles(roomID: String?) throws -> [FileAttachment] {
        try pool.read { db in
            var sql = "SELECT e.id, e.wire FROM event_files f CROSS JOIN events e ON e.id = f.event_row WHERE e.status = 0 AND e.redacted = 0"
            var arguments: StatementArguments = []
            if let roomID {
                sql += " AND f.room_id = ?"
                arguments += [roomID]
            }
            return try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap { row in
                let event = try EventStore.decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[0])
                guard let content = event.content,
                    case .message(_, _, let file?, _, _)? = try? EventContent.parse(type: event.type, content: content, roomID: event.roomID)
                else { return nil }
                return file
            }
        }
    }

    /// Notes that `transport` should delete `blocks` of `roomID`.
    public func queueBlockDeletions(_ transport: TransportName, roomID: String, blocks: [BlockRef], nowMs: Int64) throws {
        try pool.write { db in
            for block in blocks {
                try db.cachedStatement(sql: "INSERT OR IGNORE INTO block_deletions (transport, room_id, block_id, tier, added_ms) VALUES (?, ?, ?, ?, ?)")
                    .execute(arguments: [transport.rawValue, roomID, block.id.hex, Int64(block.tier.rawValue), nowMs])
            }
        }
    }

    /// The blocks `transport` should delete in `roomID`, oldest first.
    public func blockDeletions(_ transport: TransportName, roomID: String) throws -> [BlockRef] {
        try pool.read { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT block_id, tier FROM block_deletions WHERE transport = ? AND room_id = ? ORDER BY added_ms, block_id"),
                arguments: [transport.rawValue, roomID]
            ).compactMap { row in
                guard let id = BlockID(hex: row[0]), let tier = BlockTier(rawValue: row[1]) else { return nil }
                return BlockRef(id: id, tier: tier)
            }
        }
    }

    /// Notes that `transport` deleted `ids` of `roomID` (or cannot, and will not try again).
    public func blockDeletionsDone(_ transport: TransportName, roomID: String, ids: [BlockID]) throws {
        try pool.write { db in
            for id in ids {
                try db.cachedStatement(sql: "DELETE FROM block_deletions WHERE transport = ? AND room_id = ? AND block_id = ?")
                    .execute(arguments: [transport.rawValue, roomID, id.hex])
            }
        }
    }
}
