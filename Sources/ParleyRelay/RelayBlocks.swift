import Foundation
import GRDB
import Hummingbird
import ParleyCore
import ParleyStore
import Synchronization

/// The blocks of files shared in the relay's rooms (docs/PROTOCOL.md §16.6): each stored once by its hash (a
/// ``BlockStore`` under the data directory), and listed per room with the account that uploaded it there, so that a
/// block is served only to readers of a room it was uploaded to, and counted against that account's quota.
public final class RelayBlocks: Sendable {
    let store: BlockStore
    let index: DatabaseQueue
    /// Bytes one account may keep uploaded across all rooms.
    let quotaBytes: Int64
    /// Uploads being received now: each holds up to a block (16 MiB) in memory.
    private let receiving = Mutex(0)
    static let maxConcurrentUploads = 16

    /// What an upload did.
    public enum Stored: Sendable, Equatable {
        case created
        /// The room had it already: nothing was written or counted.
        case existed
    }

    init(directory: String, quotaBytes: Int64) throws {
        store = try BlockStore(path: directory + "/blocks")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        index = try DatabaseQueue(path: directory + "/blocks.sqlite", configuration: configuration)
        self.quotaBytes = quotaBytes
        try index.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS room_blocks (
                        room_id TEXT NOT NULL, block_id TEXT NOT NULL, user_id TEXT NOT NULL, size INTEGER NOT NULL, added_ms INTEGER NOT NULL,
                        PRIMARY KEY (room_id, block_id)
                    );
                    CREATE INDEX IF NOT EXISTS room_blocks_user ON room_blocks (user_id);
                    """)
        }
    }

    /// Takes a place among the uploads received at once; `false` when all are taken.
    func admitUpload() -> Bool {
        receiving.withLock { count in
            guard count < Self.maxConcurrentUploads else { return false }
            count += 1
            return true
        }
    }

    func uploadDone() { receiving.withLock { $0 -= 1 } }

    /// The ids among `ids` that `roomID` does not hold.
    func missing(_ ids: [BlockID], roomID: String) throws -> [BlockID] {
        try index.read { db in
            try ids.filter { id in
                try !Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM room_blocks WHERE room_id = ? AND block_id = ?)", arguments: [roomID, id.hex])!
            }
        }
    }

    /// Keeps `bytes` as block `id` of `roomID`, uploaded by `userID`.
    /// - Throws: ``RelayError``: `block_mismatch` (400) for bytes that are not the block (a tier's length, hashing to
    ///   the id); `quota_exceeded` (507) when the account's blocks would pass its quota.
    func put(_ bytes: [UInt8], id: BlockID, roomID: String, userID: String, nowMs: Int64) throws -> Stored {
        guard BlockTier.allCases.contains(where: { $0.byteCount == bytes.count }), BlockID.of(bytes) == id else {
            throw RelayError(
                "block_mismatch",
                "The bytes sent are not block \(id.hex.prefix(16))…: a block is a tier's length (1 KiB, 64 KiB, 1 MiB or 16 MiB) and its id is their SHA-256.",
                remedy: "Send the block's stored bytes as they are.", status: .badRequest)
        }
        return try index.write { db in
            if try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM room_blocks WHERE room_id = ? AND block_id = ?)", arguments: [roomID, id.hex])! {
                return .existed
            }
            let used = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM room_blocks WHERE user_id = ?", arguments: [userID]) ?? 0
            guard used + Int64(bytes.count) <= quotaBytes else {
                throw RelayError(
                    "quota_exceeded", "This account keeps \(used >> 20) MiB of blocks on this relay; its quota is \(quotaBytes >> 20) MiB.",
                    remedy: "Share smaller files, or ask the relay's operator for a larger quota (block_quota_mb).",
                    status: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"))
            }
            // On disk before it is listed: a listed block is always there to serve.
            do { try store.write(bytes, id: id, durable: true) } catch {
                throw RelayError("storage_failed", "The relay could not store the block.", remedy: "Try again later.", status: .internalServerError)
            }
            try db.execute(
                sql: "INSERT INTO room_blocks (room_id, block_id, user_id, size, added_ms) VALUES (?, ?, ?, ?, ?)",
                arguments: [roomID, id.hex, userID, bytes.count, nowMs])
            return .created
        }
    }

    /// Deletes block `id` of `roomID` for the account that uploaded it there; its bytes go once no room holds it.
    /// - Throws: ``RelayError``: `not_found` (404) when the room does not hold it, `not_uploader` (403) when another
    ///   account uploaded it.
    func delete(_ id: BlockID, roomID: String, userID: String) throws {
        let unheld = try index.write { db -> Bool in
            guard
                let uploader = try String.fetchOne(db, sql: "SELECT user_id FROM room_blocks WHERE room_id = ? AND block_id = ?", arguments: [roomID, id.hex])
            else {
                throw RelayError("not_found", "\(roomID) holds no block \(id.hex.prefix(16))… on this relay.", status: .notFound)
            }
            guard uploader == userID else {
                throw RelayError(
                    "not_uploader", "Only the account that uploaded a block deletes it.", remedy: "Ask its sender to delete the message.",
                    status: .forbidden)
            }
            try db.execute(sql: "DELETE FROM room_blocks WHERE room_id = ? AND block_id = ?", arguments: [roomID, id.hex])
            return try !Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM room_blocks WHERE block_id = ?)", arguments: [id.hex])!
        }
        if unheld { store.remove(id) }
    }

    /// The file holding block `id`, if `roomID` has it.
    func file(of id: BlockID, roomID: String) throws -> String? {
        let listed = try index.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM room_blocks WHERE room_id = ? AND block_id = ?)", arguments: [roomID, id.hex])!
        }
        return listed ? store.file(of: id) : nil
    }

    /// The bytes of blocks `userID` keeps uploaded.
    func usedBytes(userID: String) throws -> Int64 {
        try index.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM room_blocks WHERE user_id = ?", arguments: [userID]) ?? 0 }
    }
}
