import Foundation
import Logging
import PostgresNIO

/// A relay's accounts in the PostgreSQL database its deployment shares: a session opened at one relay is valid at
/// every other, and a device added at one publishes through all.
public final class PostgresAccountStore: AccountStorage {
    let database: RelayDatabase
    private var client: PostgresClient { database.client }
    private var logger: Logger { database.logger }

    public init(database: RelayDatabase) { self.database = database }

    public func addAccount(userID: String, passwordHash: String, nowMs: Int64) async throws -> Bool {
        try await count(
            "INSERT INTO parley_accounts (user_id, password, created_ms) VALUES (\(userID), \(passwordHash), \(nowMs)) ON CONFLICT (user_id) DO NOTHING RETURNING 1"
        ) > 0
    }

    public func credentials(userID: String) async throws -> (passwordHash: String, isDisabled: Bool)? {
        let rows = try await client.query("SELECT password, disabled FROM parley_accounts WHERE user_id = \(userID)", logger: logger)
        for try await (password, disabled) in rows.decode((String, Bool).self) { return (password, disabled) }
        return nil
    }

    public func setPassword(userID: String, passwordHash: String, keepingSession token: String?) async throws {
        let kept = token.map(AccountStore.tokenHash) ?? Data()
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("UPDATE parley_accounts SET password = \(passwordHash) WHERE user_id = \(userID)", logger: logger)
            try await connection.query("DELETE FROM parley_sessions WHERE user_id = \(userID) AND token_hash <> \(kept)", logger: logger)
        }
    }

    @discardableResult public func deleteAccount(userID: String) async throws -> Bool {
        try await count("DELETE FROM parley_accounts WHERE user_id = \(userID) RETURNING 1") > 0
    }

    @discardableResult public func setDisabled(_ disabled: Bool, userID: String) async throws -> Bool {
        try await client.withTransaction(logger: logger) { connection in
            var found = false
            for try await _ in try await connection.query(
                "UPDATE parley_accounts SET disabled = \(disabled) WHERE user_id = \(userID) RETURNING 1", logger: logger
            ) { found = true }
            if disabled { try await connection.query("DELETE FROM parley_sessions WHERE user_id = \(userID)", logger: logger) }
            return found
        }
    }

    public func accounts() async throws -> [Account] {
        let rows = try await client.query(
            """
            SELECT a.user_id, a.created_ms, a.disabled,
                (SELECT COUNT(*) FROM parley_devices d WHERE d.user_id = a.user_id), (SELECT COUNT(*) FROM parley_sessions s WHERE s.user_id = a.user_id)
            FROM parley_accounts a ORDER BY a.user_id
            """, logger: logger)
        var accounts: [Account] = []
        for try await (userID, created, disabled, devices, sessions) in rows.decode((String, Int64, Bool, Int64, Int64).self) {
            accounts.append(Account(userID: userID, createdMs: created, isDisabled: disabled, devices: Int(devices), sessions: Int(sessions)))
        }
        return accounts
    }

    public func addSession(token: String, userID: String, nowMs: Int64, expiresMs: Int64) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM parley_sessions WHERE expires_ms <= \(nowMs)", logger: logger)
            try await connection.query(
                "INSERT INTO parley_sessions (token_hash, user_id, created_ms, expires_ms) VALUES (\(AccountStore.tokenHash(token)), \(userID), \(nowMs), \(expiresMs))",
                logger: logger)
        }
    }

    public func sessionUser(token: String, nowMs: Int64) async throws -> String? {
        let hash = AccountStore.tokenHash(token)
        let rows = try await client.query(
            "SELECT s.token_hash, s.user_id FROM parley_sessions s JOIN parley_accounts a USING (user_id) WHERE s.token_hash = \(hash) AND s.expires_ms > \(nowMs) AND NOT a.disabled",
            logger: logger)
        for try await (storedHash, userID) in rows.decode((Data, String).self) {
            // The lookup went by hash; the comparison that decides takes the same time wherever the hashes differ.
            return constantTimeEquals(storedHash.bytes, hash.bytes) ? userID : nil
        }
        return nil
    }

    public func deleteSession(token: String) async throws {
        try await client.query("DELETE FROM parley_sessions WHERE token_hash = \(AccountStore.tokenHash(token))", logger: logger)
    }

    public func deleteSessions(userID: String) async throws {
        try await client.query("DELETE FROM parley_sessions WHERE user_id = \(userID)", logger: logger)
    }

    public func addChallenge(nonce: String, userID: String, nowMs: Int64, expiresMs: Int64) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM parley_challenges WHERE expires_ms <= \(nowMs)", logger: logger)
            try await connection.query(
                "DELETE FROM parley_challenges WHERE user_id = \(userID) AND nonce NOT IN (SELECT nonce FROM parley_challenges WHERE user_id = \(userID) ORDER BY expires_ms DESC LIMIT 15)",
                logger: logger)
            try await connection.query(
                "INSERT INTO parley_challenges (nonce, user_id, expires_ms) VALUES (\(nonce), \(userID), \(expiresMs))", logger: logger)
        }
    }

    public func takeChallenge(nonce: String, userID: String, nowMs: Int64) async throws -> Bool {
        try await count("DELETE FROM parley_challenges WHERE nonce = \(nonce) AND user_id = \(userID) AND expires_ms > \(nowMs) RETURNING 1") > 0
    }

    public func addDevice(key: String, userID: String, nowMs: Int64) async throws -> String? {
        if try await count("INSERT INTO parley_devices (device_key, user_id, added_ms) VALUES (\(key), \(userID), \(nowMs)) ON CONFLICT DO NOTHING RETURNING 1")
            > 0
        {
            return nil
        }
        return try await deviceOwner(key: key)
    }

    public func deviceOwner(key: String) async throws -> String? {
        let rows = try await client.query("SELECT user_id FROM parley_devices WHERE device_key = \(key)", logger: logger)
        for try await userID in rows.decode(String.self) { return userID }
        return nil
    }

    public func addInvite(token: String, nowMs: Int64, expiresMs: Int64) async throws {
        try await client.query(
            "INSERT INTO parley_invites (token_hash, created_ms, expires_ms) VALUES (\(AccountStore.tokenHash(token)), \(nowMs), \(expiresMs))", logger: logger)
    }

    public func takeInvite(token: String, userID: String, nowMs: Int64) async throws -> Bool {
        try await count(
            "UPDATE parley_invites SET used_by = \(userID) WHERE token_hash = \(AccountStore.tokenHash(token)) AND used_by IS NULL AND expires_ms > \(nowMs) RETURNING 1"
        ) > 0
    }

    /// How many rows a statement ending in `RETURNING 1` returned.
    private func count(_ query: PostgresQuery) async throws -> Int {
        var count = 0
        for try await _ in try await client.query(query, logger: logger) { count += 1 }
        return count
    }
}
