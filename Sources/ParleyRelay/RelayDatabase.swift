import Foundation
import Logging
import NIOSSL
import PostgresNIO
import Synchronization

/// A PostgreSQL database that several relays share (`parley serve --database postgres://…`): their accounts, and the
/// log of every event any of them took, in the order they took them. Each relay keeps its own store as a cache of that
/// log (it judges and answers from it), follows the log (`LISTEN`/`NOTIFY` wakes it, positions say what it lacks) and
/// pushes to its clients what the other relays took. A `Service`: its connection pool runs while the relay does.
public final class RelayDatabase: Sendable {
    let client: PostgresClient
    let logger: Logger
    /// The URL without its password, for messages.
    public let displayURL: String

    /// The `NOTIFY` channel that tells followers the log grew.
    static let channel = "parley_events"
    /// Advisory lock keys: one for the schema, one that orders appends (so positions commit in order and a follower
    /// reading past a position never skips one that commits later).
    static let schemaLock: Int64 = 0x7061_726C_6579_0001
    static let appendLock: Int64 = 0x7061_726C_6579_0002

    /// Opens a pool for `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]`, or
    /// `postgres:///DATABASE?host=/run/postgresql` for a Unix socket). TLS is required unless the host is loopback or a
    /// socket, or `sslmode=disable` says otherwise. Nothing connects until ``run()``.
    /// - Throws: ``RelayError`` `invalid_configuration` when the URL is not one.
    public init(url: String, logger: Logger) throws(RelayError) {
        let (configuration, displayURL) = try Self.configuration(url)
        self.displayURL = displayURL
        self.logger = logger
        var options = configuration
        options.options.maximumConnections = 16
        options.options.connectTimeout = .seconds(5)
        client = PostgresClient(configuration: options, backgroundLogger: logger)
    }

    static func configuration(_ url: String) throws(RelayError) -> (PostgresClient.Configuration, String) {
        func invalid(_ problem: String) -> RelayError {
            RelayError(
                "invalid_configuration", "The database URL is not usable: \(problem).",
                remedy: "Give --database as postgres://USER:PASSWORD@HOST:PORT/DATABASE (add ?sslmode=disable for a server without TLS).",
                status: .internalServerError)
        }
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? "") else {
            throw invalid("it does not start with postgres://")
        }
        var display = components
        if display.password != nil { display.password = "****" }
        let displayURL = display.string ?? "postgres://…"
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        let user = components.user.flatMap { $0.removingPercentEncoding } ?? ProcessInfo.processInfo.environment["USER"] ?? "postgres"
        let password = components.password.flatMap { $0.removingPercentEncoding }
        let database = components.path.count > 1 ? String(components.path.dropFirst()).removingPercentEncoding : nil
        if let socketFolder = query["host"], socketFolder.hasPrefix("/") {
            let port = components.port ?? 5432
            return (.init(unixSocketPath: "\(socketFolder)/.s.PGSQL.\(port)", username: user, password: password, database: database), displayURL)
        }
        guard let host = components.host, !host.isEmpty else { throw invalid("it names no host") }
        let isLoopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host)
        let tls: PostgresClient.Configuration.TLS
        switch query["sslmode"] ?? (isLoopback ? "disable" : "require") {
        case "disable": tls = .disable
        case "prefer", "allow": tls = .prefer(.makeClientConfiguration())
        case "require", "verify-ca", "verify-full": tls = .require(.makeClientConfiguration())
        case let mode: throw invalid("sslmode \(mode) is not one of disable, prefer, require")
        }
        return (.init(host: host, port: components.port ?? 5432, username: user, password: password, database: database, tls: tls), displayURL)
    }

    /// Runs the connection pool until the task is cancelled.
    public func run() async { await client.run() }

    /// Makes the tables the relay needs, if missing; relays starting together make them once.
    public func migrate() async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.schemaLock))", logger: logger)
            for statement in [
                "CREATE TABLE IF NOT EXISTS parley_accounts (user_id TEXT PRIMARY KEY, password TEXT NOT NULL, created_ms BIGINT NOT NULL, disabled BOOLEAN NOT NULL DEFAULT FALSE)",
                "CREATE TABLE IF NOT EXISTS parley_sessions (token_hash BYTEA PRIMARY KEY, user_id TEXT NOT NULL REFERENCES parley_accounts(user_id) ON DELETE CASCADE, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS parley_sessions_by_user ON parley_sessions(user_id)",
                "CREATE TABLE IF NOT EXISTS parley_devices (device_key TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES parley_accounts(user_id) ON DELETE CASCADE, added_ms BIGINT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS parley_devices_by_user ON parley_devices(user_id)",
                "CREATE TABLE IF NOT EXISTS parley_challenges (nonce TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES parley_accounts(user_id) ON DELETE CASCADE, expires_ms BIGINT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS parley_invites (token_hash BYTEA PRIMARY KEY, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL, used_by TEXT)",
                "CREATE TABLE IF NOT EXISTS parley_events (position BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, room_id TEXT NOT NULL, wire BYTEA NOT NULL)",
            ] {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
    }

    // MARK: The shared log

    /// An event of the shared log.
    struct LoggedEvent: Sendable {
        var position: Int64
        var eventID: String
        var wire: [UInt8]
    }

    /// Appends events the relay took (those the log holds already are left as they are) and wakes the followers, in
    /// one transaction: once it returns, every relay of the deployment can serve them.
    /// - Throws: ``DatabaseTimeout`` after 5 s: a client waits for the acknowledgement, and a statement sent on a
    ///   connection the server dropped (a restart) may never be answered.
    func append(_ events: [RelayEvents.Kept]) async throws {
        guard !events.isEmpty else { return }
        try await withDeadline(.seconds(5)) { [self] in try await appendNow(events) }
    }

    private func appendNow(_ events: [RelayEvents.Kept]) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.appendLock))", logger: logger)
            for event in events {
                try await connection.query(
                    "INSERT INTO parley_events (event_id, room_id, wire) VALUES (\(event.eventID), \(event.roomID), \(Data(event.wire))) ON CONFLICT (event_id) DO NOTHING",
                    logger: logger)
            }
            try await connection.query("SELECT pg_notify(\(Self.channel), '')", logger: logger)
        }
    }

    /// The log's events after `position`, oldest first.
    /// - Throws: ``DatabaseTimeout`` after 10 s.
    func events(after position: Int64, limit: Int) async throws -> [LoggedEvent] {
        try await withDeadline(.seconds(10)) { [self] in try await eventsNow(after: position, limit: limit) }
    }

    private func eventsNow(after position: Int64, limit: Int) async throws -> [LoggedEvent] {
        var events: [LoggedEvent] = []
        let rows = try await client.query(
            "SELECT position, event_id, wire FROM parley_events WHERE position > \(position) ORDER BY position LIMIT \(limit)", logger: logger)
        for try await (position, eventID, wire) in rows.decode((Int64, String, Data).self) {
            events.append(LoggedEvent(position: position, eventID: eventID, wire: [UInt8](wire)))
        }
        return events
    }

    /// The newest position of the log (0 when it is empty).
    func lastPosition() async throws -> Int64 {
        let rows = try await client.query("SELECT COALESCE(MAX(position), 0)::BIGINT FROM parley_events", logger: logger)
        for try await position in rows.decode(Int64.self) { return position }
        return 0
    }

    /// Calls `wake` once listening has begun, then for each notice that the log grew; returns when the connection
    /// ends (the server restarted, the network failed) or the task is cancelled.
    func listen(_ wake: @Sendable () -> Void) async throws {
        try await client.withConnection { connection in
            try await connection.listen(on: Self.channel) { notices in
                // What was appended before listening began is read now.
                wake()
                for try await _ in notices { wake() }
            }
        }
    }
}

/// A database operation did not finish in time.
struct DatabaseTimeout: Error {}

/// Runs `work`, or throws ``DatabaseTimeout`` after `limit` without waiting for it any longer (it is cancelled, and
/// ends when its connection does).
func withDeadline<T: Sendable>(_ limit: Duration, _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    let state = DeadlineState<T>()
    return try await withCheckedThrowingContinuation { continuation in
        state.waiter.withLock { $0 = continuation }
        let worker = Task {
            let result: Result<T, any Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            state.timer.withLock { $0?.cancel() }
            state.waiter.withLock { $0.take() }?.resume(with: result)
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            guard !Task.isCancelled, let continuation = state.waiter.withLock({ $0.take() }) else { return }
            continuation.resume(throwing: DatabaseTimeout())
            worker.cancel()
        }
        state.timer.withLock { $0 = timer }
    }
}

/// Who waits for ``withDeadline(_:_:)``, and its timer.
private final class DeadlineState<T: Sendable>: Sendable {
    let waiter = Mutex<CheckedContinuation<T, any Error>?>(nil)
    let timer = Mutex<Task<Void, Never>?>(nil)
}

extension RelayDatabase {
    /// Runs `body` on a relay's accounts as its operator's tools reach them: in the database at `url` (its pool runs
    /// meanwhile), or without one, in the SQLite file at `accountsPath`.
    public static func withAccounts<T: Sendable>(
        databaseURL url: String?, accountsPath: String, logger: Logger, _ body: @Sendable (any AccountStorage) async throws -> T
    ) async throws -> T {
        guard let url else { return try await body(try AccountStore(path: accountsPath)) }
        let database = try RelayDatabase(url: url, logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await database.run()
                return nil
            }
            defer { group.cancelAll() }
            try await database.migrate()
            return try await body(PostgresAccountStore(database: database))
        }
    }
}
