import Foundation
import Logging

extension RelayServer {
    /// The file that remembers how far into the shared log the relay's store goes.
    var positionPath: String { settings.dataDirectory + "/shared-log-position" }

    /// Makes the database's tables and brings the relay's store up to the shared log, before the relay serves.
    /// - Throws: ``RelayError`` `database_unavailable` when the database cannot be reached within 30 s.
    func prepare(_ database: RelayDatabase) async throws {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await database.migrate() }
                group.addTask {
                    try await Task.sleep(for: .seconds(30))
                    throw CancellationError()
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch {
            throw RelayError(
                "database_unavailable", "Cannot reach the database \(database.displayURL) (\(String(describing: type(of: error)))).",
                remedy: "Check that PostgreSQL runs and takes connections for this user and database.", status: .serviceUnavailable)
        }
        let saved = (try? String(contentsOfFile: positionPath, encoding: .utf8)).flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // A position past the log's end is another database's: read this one from the start.
        let position = try await min(saved ?? 0, database.lastPosition()) == saved ? saved ?? 0 : 0
        sharedLog.withLock { $0.position = position }
        let read = try await readSharedLog(database, live: false)
        if read > 0 { logger.info("Relay store brought up to the shared log", metadata: ["events": "\(read)"]) }
    }

    /// Follows the shared log while the relay runs: a notice from the database (or, should one be lost, a poll every
    /// 2 s) makes it read what it lacks, store it and push it to the members connected here. A lost connection to the
    /// database is opened again after a wait that grows (0.25 s doubling to 10 s, with jitter).
    func follow(_ database: RelayDatabase) async {
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var delay = Duration.milliseconds(250)
                while !Task.isCancelled {
                    let started = ContinuousClock.now
                    do { try await database.listen { wake.yield() } } catch {
                        if Task.isCancelled { break }
                        self.logger.warning("Relay lost the database; listening again", metadata: ["error": "\(String(describing: type(of: error)))"])
                    }
                    if ContinuousClock.now - started > .seconds(30) { delay = .milliseconds(250) }
                    try? await Task.sleep(for: delay * Double.random(in: 0.5...1))
                    delay = min(delay * 2, .seconds(10))
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    wake.yield()
                }
            }
            group.addTask {
                for await _ in wakes {
                    do { _ = try await self.readSharedLog(database, live: true) } catch {
                        self.logger.warning("Relay could not read the shared log", metadata: ["error": "\(String(describing: type(of: error)))"])
                    }
                }
            }
            await withTaskCancellationHandler {
                await group.waitForAll()
            } onCancel: {
                wake.finish()
            }
        }
    }

    /// Reads the shared log from the relay's position to its end, storing what the relay lacks and, when `live`,
    /// pushing it to the members connected here.
    /// - Returns: how many events of the log it read.
    func readSharedLog(_ database: RelayDatabase, live: Bool) async throws -> Int {
        let batchSize = 500
        var read = 0
        while true {
            let batch = try await database.events(after: sharedLog.withLock { $0.position }, limit: batchSize)
            guard let last = batch.last else { return read }
            let stored = try await events.onQueue { [events] in try events.ingestShared(batch, nowMs: RelayAccounts.nowMs()) }
            savePosition(last.position)
            if live, !stored.isEmpty { fanOut(stored) }
            read += batch.count
            if batch.count < batchSize { return read }
        }
    }

    /// Notes the position reached, and writes it to disk at most once a second: a relay that stops reads again at
    /// most a second's worth of the log, whose events it then finds it holds.
    private func savePosition(_ position: Int64) {
        let now = ContinuousClock.now
        let due = sharedLog.withLock { state in
            state.position = position
            guard state.savedAt.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            state.savedAt = now
            return true
        }
        if due { try? Data("\(position)\n".utf8).write(to: URL(fileURLWithPath: positionPath), options: .atomic) }
    }
}
