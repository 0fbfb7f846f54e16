import Crypto
import Foundation
import GRDB
import ParleyCore

/// Where a relay keeps its accounts, sessions, devices, device challenges and invite tokens: a SQLite file of its own
/// (``AccountStore``), or a PostgreSQL database that several relays share (``PostgresAccountStore``). Neither stores a
/// password (Argon2id hashes) or a token (SHA-256 of each).
public protocol AccountStorage: Sendable {
    /// Adds an account.
    /// - Returns: `false` when the user id is taken.
    func addAccount(userID: String, passwordHash: String, nowMs: Int64) async throws -> Bool
    /// The account's password hash and whether it is disabled; `nil` when there is no such account.
    func credentials(userID: String) async throws -> (passwordHash: String, isDisabled: Bool)?
    /// Sets the password hash; every session of the account but `token`'s ends.
    func setPassword(userID: String, passwordHash: String, keepingSession token: String?) async throws
    /// Deletes an account with its sessions and devices.
    /// - Returns: whether there was one.
    @discardableResult func deleteAccount(userID: String) async throws -> Bool
    /// Disables an account (its sessions end; it cannot log in) or enables it again.
    /// - Returns: whether there was one.
    @discardableResult func setDisabled(_ disabled: Bool, userID: String) async throws -> Bool
    /// Every account, by user id.
    func accounts() async throws -> [Account]
    func addSession(token: String, userID: String, nowMs: Int64, expiresMs: Int64) async throws
    /// The user whose unexpired session `token` is, unless the account is disabled.
    func sessionUser(token: String, nowMs: Int64) async throws -> String?
    func deleteSession(token: String) async throws
    func deleteSessions(userID: String) async throws
    /// Opens a device challenge; an account keeps at most 16 open.
    func addChallenge(nonce: String, userID: String, nowMs: Int64, expiresMs: Int64) async throws
    /// Uses up a challenge: `true` when it was open for `userID` until after `nowMs`.
    func takeChallenge(nonce: String, userID: String, nowMs: Int64) async throws -> Bool
    /// Adds a device key to an account.
    /// - Returns: the account that already holds the key, if one does (its own: nothing changes).
    func addDevice(key: String, userID: String, nowMs: Int64) async throws -> String?
    /// The account a device key was added to.
    func deviceOwner(key: String) async throws -> String?
    func addInvite(token: String, nowMs: Int64, expiresMs: Int64) async throws
    /// Uses up an invite token for `userID`: `true` when it was unused and unexpired.
    func takeInvite(token: String, userID: String, nowMs: Int64) async throws -> Bool
}

/// An account as `parley relay admin accounts` lists it.
public struct Account: Sendable, Equatable {
    public var userID: String
    public var createdMs: Int64
    public var isDisabled: Bool
    public var devices: Int
    public var sessions: Int
}

/// A relay's accounts in one SQLite file (mode 0600): the embedded default.
public final class AccountStore: AccountStorage {
    let pool: DatabasePool
    public let path: String

    /// Opens (creating if needed) the accounts file at `path`.
    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA foreign_keys = ON") }
        let existed = FileManager.default.fileExists(atPath: path)
        if !existed { _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) }
        pool = try DatabasePool(path: path, configuration: configuration)
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE accounts (
                        user_id TEXT PRIMARY KEY, password TEXT NOT NULL, created_ms INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
                    CREATE TABLE sessions (
                        token_hash BLOB PRIMARY KEY, user_id TEXT NOT NULL REFERENCES accounts(user_id) ON DELETE CASCADE,
                        created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
                    CREATE INDEX sessions_by_user ON sessions(user_id);
                    CREATE TABLE devices (
                        device_key TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES accounts(user_id) ON DELETE CASCADE,
                        added_ms INTEGER NOT NULL);
                    CREATE INDEX devices_by_user ON devices(user_id);
                    CREATE TABLE challenges (
                        nonce TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES accounts(user_id) ON DELETE CASCADE,
                        expires_ms INTEGER NOT NULL);
                    CREATE TABLE invites (token_hash BLOB PRIMARY KEY, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, used_by TEXT);
                    """)
        }
        try migrator.migrate(pool)
        // SQLite makes its -wal and -shm files with the main file's mode, but a file made before this process set it
        // keeps its own: the whole set is the relay's secret.
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path + suffix)
        }
    }

    static func tokenHash(_ token: String) -> Data { Data(SHA256.hash(data: Array(token.utf8))) }

    // MARK: Accounts

    /// Adds an account.
    /// - Returns: `false` when the user id is taken.
    public func addAccount(userID: String, passwordHash: String, nowMs: Int64) throws -> Bool {
        try pool.write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM accounts WHERE user_id = ?", arguments: [userID]) == nil else { return false }
            try db.execute(sql: "INSERT INTO accounts (user_id, password, created_ms) VALUES (?, ?, ?)", arguments: [userID, passwordHash, nowMs])
            return true
        }
    }

    /// The account's password hash and whether it is disabled; `nil` when there is no such account.
    public func credentials(userID: String) throws -> (passwordHash: String, isDisabled: Bool)? {
        try pool.read { db in
            try Row.fetchOne(db, sql: "SELECT password, disabled FROM accounts WHERE user_id = ?", arguments: [userID]).map { ($0[0], $0[1]) }
        }
    }

    public func setPassword(userID: String, passwordHash: String, keepingSession token: String?) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE accounts SET password = ? WHERE user_id = ?", arguments: [passwordHash, userID])
            try db.execute(
                sql: "DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?", arguments: [userID, token.map(AccountStore.tokenHash)])
        }
    }

    /// Deletes an account with its sessions and devices.
    /// - Returns: whether there was one.
    @discardableResult public func deleteAccount(userID: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM accounts WHERE user_id = ?", arguments: [userID])
            return db.changesCount > 0
        }
    }

    /// Disables an account (its sessions end; it cannot log in) or enables it again.
    /// - Returns: whether there was one.
    @discardableResult public func setDisabled(_ disabled: Bool, userID: String) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE accounts SET disabled = ? WHERE user_id = ?", arguments: [disabled, userID])
            let found = db.changesCount > 0
            if disabled { try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [userID]) }
            return found
        }
    }

    /// Every account, by user id.
    public func accounts() throws -> [Account] {
        try pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT a.user_id, a.created_ms, a.disabled,
                        (SELECT COUNT(*) FROM devices d WHERE d.user_id = a.user_id), (SELECT COUNT(*) FROM sessions s WHERE s.user_id = a.user_id)
                    FROM accounts a ORDER BY a.user_id
                    """
            ).map { Account(userID: $0[0], createdMs: $0[1], isDisabled: $0[2], devices: $0[3], sessions: $0[4]) }
        }
    }

    // MARK: Sessions

    public func addSession(token: String, userID: String, nowMs: Int64, expiresMs: Int64) throws {
        try pool.write { db in
            // Expired sessions go as new ones come, so the table holds live sessions and a bounded tail.
            try db.execute(sql: "DELETE FROM sessions WHERE expires_ms <= ?", arguments: [nowMs])
            try db.execute(
                sql: "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) VALUES (?, ?, ?, ?)",
                arguments: [AccountStore.tokenHash(token), userID, nowMs, expiresMs])
        }
    }

    /// The user whose unexpired session `token` is, unless the account is disabled.
    public func sessionUser(token: String, nowMs: Int64) throws -> String? {
        let hash = AccountStore.tokenHash(token)
        return try pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql:
                        "SELECT s.token_hash, s.user_id FROM sessions s JOIN accounts a USING (user_id) WHERE s.token_hash = ? AND s.expires_ms > ? AND a.disabled = 0",
                    arguments: [hash, nowMs])
            else { return nil }
            // The lookup went by hash; the comparison that decides takes the same time wherever the hashes differ.
            return constantTimeEquals((row[0] as Data).bytes, hash.bytes) ? row[1] : nil
        }
    }

    public func deleteSession(token: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM sessions WHERE token_hash = ?", arguments: [AccountStore.tokenHash(token)]) }
    }

    public func deleteSessions(userID: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [userID]) }
    }

    // MARK: Devices

    public func addChallenge(nonce: String, userID: String, nowMs: Int64, expiresMs: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM challenges WHERE expires_ms <= ?", arguments: [nowMs])
            // A bounded number of open challenges per account: asking many times costs the relay nothing more.
            try db.execute(
                sql:
                    "DELETE FROM challenges WHERE user_id = ? AND nonce NOT IN (SELECT nonce FROM challenges WHERE user_id = ? ORDER BY expires_ms DESC LIMIT 15)",
                arguments: [userID, userID])
            try db.execute(sql: "INSERT INTO challenges (nonce, user_id, expires_ms) VALUES (?, ?, ?)", arguments: [nonce, userID, expiresMs])
        }
    }

    /// Uses up a challenge: `true` when it was open for `userID` until after `nowMs`.
    public func takeChallenge(nonce: String, userID: String, nowMs: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM challenges WHERE nonce = ? AND user_id = ? AND expires_ms > ?", arguments: [nonce, userID, nowMs])
            return db.changesCount > 0
        }
    }

    /// Adds a device key to an account.
    /// - Returns: the account that already holds the key, if one does (its own: nothing changes).
    public func addDevice(key: String, userID: String, nowMs: Int64) throws -> String? {
        try pool.write { db in
            if let owner = try String.fetchOne(db, sql: "SELECT user_id FROM devices WHERE device_key = ?", arguments: [key]) { return owner }
            try db.execute(sql: "INSERT INTO devices (device_key, user_id, added_ms) VALUES (?, ?, ?)", arguments: [key, userID, nowMs])
            return nil
        }
    }

    /// The account a device key was added to.
    public func deviceOwner(key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT user_id FROM devices WHERE device_key = ?", arguments: [key]) }
    }

    // MARK: Invites

    public func addInvite(token: String, nowMs: Int64, expiresMs: Int64) throws {
        try pool.write { db in
            try db.execute(
                sql: "INSERT INTO invites (token_hash, created_ms, expires_ms) VALUES (?, ?, ?)", arguments: [AccountStore.tokenHash(token), nowMs, expiresMs])
        }
    }

    /// Uses up an invite token for `userID`: `true` when it was unused and unexpired.
    public func takeInvite(token: String, userID: String, nowMs: Int64) throws -> Bool {
        try pool.write { db in
            try db.execute(
                sql: "UPDATE invites SET used_by = ? WHERE token_hash = ? AND used_by IS NULL AND expires_ms > ?",
                arguments: [userID, AccountStore.tokenHash(token), nowMs])
            return db.changesCount > 0
        }
    }
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}

extension Data {
    var bytes: [UInt8] { [UInt8](self) }
}
