import ArgumentParser
import Foundation
import Logging
import ParleyBucket
import ParleyClient
import ParleyStore
import ServiceLifecycle

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run this home's node until stopped: every bucket room kept in step, events sent from other shells written at once.",
        discussion: """
            Each bucket room is synced every --interval seconds on its own (a failing bucket is tried less and less \
            often without delaying the others), rooms joined while it runs are picked up, and an event signed by \
            `parley send` (or any command) in another shell is written within a tenth of a second. SIGINT or SIGTERM \
            lets the write in progress finish, writes the outbox (for at most 10 s) and exits 0, or 1 if events stay \
            unsent. One node per home: a second one, or `parley sync`, says which process holds the home. Logs go to \
            standard error, one line each, never with message text or keys.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(parsing: .unconditional, help: "Seconds between syncs of each room.") var interval = 1.0
    @Option(name: .customLong("flush-after"), parsing: .unconditional, help: "Seconds an event of this device may wait before it is written.")
    var flushAfter = 0.0
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be above 0 seconds; it was \(interval).") }
        guard flushAfter >= 0 else { throw ValidationError("--flush-after must be at least 0 seconds; it was \(flushAfter).") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical; it was \(TerminalText.escape(logLevel)).")
        }
    }

    func run() async throws {
        let home = global.parleyHome
        let lock = try failing { try home.lockForSyncing("node") }
        defer { withExtendedLifetime(lock) {} }
        let node = try global.node()
        let client = try failing { try bucketClient(node) }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley.node")
        var settings = NodeRunner.Settings()
        settings.schedule = BucketSchedule.Settings(pollIntervalMs: Int64(interval * 1000), flushAfterMs: Int64(flushAfter * 1000))
        let runner = NodeRunner(client: client, settings: settings, observer: NodeLog(logger: logger), logger: logger)
        printError("Node running for \(home.path) (pid \(getpid())); stop it with Ctrl-C or `kill \(getpid())`.")
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [runner], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        if runner.roomsLeftUnsent > 0 { throw ExitCode(1) }
    }
}

/// What `parley node` logs of its rooms: counts and states, never message text.
struct NodeLog: NodeRunnerObserver {
    let logger: Logger

    func roomSynced(_ room: BucketRoom, _ report: SyncReport) {
        guard !report.accepted.isEmpty || !report.problems.isEmpty else { return }
        logger.info(
            "Room synced",
            metadata: ["room.id": "\(room.roomID)", "events.new": "\(report.accepted.count)", "files": "\(report.filesRead)", "problems": "\(report.problems.count)"])
        for problem in report.problems.prefix(10) { logger.warning("Bucket problem", metadata: ["room.id": "\(room.roomID)", "problem": "\(TerminalText.escape(problem))"]) }
    }

    func roomFailed(_ room: BucketRoom, report: String) { logger.warning("\(TerminalText.escape(report))") }

    func roomRecovered(_ room: BucketRoom, report: String) { logger.notice("\(TerminalText.escape(report))") }

    func flushingBeforeExit(events: Int, rooms: Int) {
        logger.notice("Writing the outbox before exiting", metadata: ["events": "\(events)", "rooms": "\(rooms)"])
    }

    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {
        logger.error("Events stay unsent; the next node or sync writes them", metadata: ["room.id": "\(room.roomID)", "events": "\(events)", "reason": "\(TerminalText.escape(reason))"])
    }
}
