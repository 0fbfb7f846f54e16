import Foundation
import GRDB
import ParleyCore

extension EventStore {
    static func registerSentFilesMigration(_ migrator: inout DatabaseMigrator) {
        // The files this device sealed, by the SHA-256 of their bytes: the same file shared again takes the same
        // blocks, so it is stored and moved once.
        migrator.registerMigration("v12-sent-files") { db in
            try db.execute(
                sql: """
                    CREATE TABLE sent_files (
                        sha256 BLOB PRIMARY KEY,
                        size INTEGER NOT NULL,
                        root BLOB NOT NULL,
                        root_tier INTEGER NOT NULL,
                        file_key BLOB NOT NULL
                    )
                    """)
        }
    }

    /// The reference of a file this device sealed before with these bytes (their SHA-256 and size), if any.
    public func sentFile(sha256: [UInt8], size: Int64) throws -> FileReference? {
        try pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT root, root_tier, file_key, whitened FROM sent_files WHERE sha256 = ? AND size = ?", arguments: [Data(sha256), size]),
                let root = BlockID(bytes: (row[0] as Data).bytes), let tier = BlockTier(rawValue: UInt8(row[1] as Int64)),
                let key = try? FileKey(bytes: (row[2] as Data).bytes)
            else { return nil }
            return try? FileReference(root: root, rootTier: tier, key: key, size: size, whitened: row[3])
        }
    }

    /// Remembers a file this device sealed, for ``sentFile(sha256:size:)``; the first reference for a file stays.
    public func recordSentFile(sha256: [UInt8], _ reference: FileReference) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO sent_files (sha256, size, root, root_tier, file_key, whitened) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [
                    Data(sha256), reference.layout.size, Data(reference.root.bytes), Int64(reference.rootTier.rawValue), Data(reference.key.bytes),
                    reference.layout.whitened,
                ])
        }
    }

    /// The files that the events of one device's chain in `roomID` with seqs in `seqs` share (sealed ones once
    /// opened), in seq order.
    public func fileAttachments(roomID: String, senderKey: String, seqs: ClosedRange<Int64>) throws -> [FileAttachment] {
        try pool.read { db in
            let rows = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT e.id, e.wire FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id
                        WHERE e.room_id = ? AND e.sender_key = ? AND e.seq BETWEEN ? AND ? AND COALESCE(p.type, e.type) = 'm.room.message'
                        ORDER BY e.seq
                        """), arguments: [roomID, senderKey, seqs.lowerBound, seqs.upperBound])
            return try rows.compactMap { row in
                let event = try EventStore.decryptedView(db: db, event: Event.parse((row[1] as Data).bytes), row: row[0])
                guard let content = event.content,
                    case .message(_, _, let file?, _, _)? = try? EventContent.parse(type: event.type, content: content, roomID: roomID)
                else { return nil }
                return file
            }
        }
    }
}
