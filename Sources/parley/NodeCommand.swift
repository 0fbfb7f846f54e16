import ArgumentParser
import Foundation
import Logging
import ParleyAPI
import ParleyClient
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

            The node serves its local API (docs/API.md) on --api-host (127.0.0.1) and --api-port (0: a free port), and \
            writes the address and a fresh token to node.json in the home, readable by its owner only.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(parsing: .unconditional, help: "Seconds between syncs of each room (default: sync.interval, 1).") var interval: Double?
    @Option(name: .customLong("flush-after"), parsing: .unconditional, help: "Seconds an event of this device may wait before it is written.")
    var flushAfter = 0.0
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: node.log_level, info).")
    var logLevel: String?
    @Option(name: .customLong("api-host"), help: "The address the local API listens on (default: node.api_host, 127.0.0.1).") var apiHost: String?
    @Option(name: .customLong("api-port"), help: "The local API's port; 0 takes a free one (default: node.api_port, 0).") var apiPort: Int?

    func validate() throws {
        if let interval, !(interval > 0 && interval <= 86_400) {
            throw ValidationError("--interval must be above 0 and at most 86400 seconds; it was \(interval).")
        }
        guard flushAfter >= 0 && flushAfter <= 86_400 else { throw ValidationError("--flush-after must be from 0 to 86400 seconds; it was \(flushAfter).") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of \(Setting.logLevels.joined(separator: ", ")); it was \(TerminalText.escape(logLevel)).")
        }
    }

    /// The settings this command's flags give.
    var flags: [Setting: SettingValue] {
        var flags: [Setting: SettingValue] = [:]
        if let interval { flags[.syncInterval] = .seconds(interval) }
        if let logLevel { flags[.nodeLogLevel] = .text(logLevel) }
        if let apiHost { flags[.nodeAPIHost] = .text(apiHost) }
        if let apiPort { flags[.nodeAPIPort] = .integer(apiPort) }
        return flags
    }

    func run() async throws {
        let home = global.parleyHome
        let configuration = try global.configuration(flags: flags)
        let lock = try failing { try home.lockForSyncing("node") }
        defer { withExtendedLifetime(lock) {} }
        let node = try global.node()
        let client = BucketClient(node: node, settings: configuration.bucketSettings)
        let level = configuration.nodeLogLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley.node")
        var settings = NodeRunner.Settings()
        settings.schedule = BucketSchedule.Settings(pollIntervalMs: Int64(configuration.syncInterval * 1000), flushAfterMs: Int64(flushAfter * 1000))
        let runner = NodeRunner(client: client, settings: settings, observer: NodeLog(logger: logger), logger: logger)
        var apiSettings = LocalAPI.Settings()
        apiSettings.host = configuration.apiHost
        apiSettings.port = configuration.apiPort
        let api = LocalAPI(client: client, settings: apiSettings, logger: Logger(label: "parley.api"))
        printError("Node running for \(home.path) (pid \(getpid())); stop it with Ctrl-C or `kill \(getpid())`.")
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [runner, api], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let (host, infoPath) = (apiSettings.host.contains(":") ? "[\(apiSettings.host)]" : apiSettings.host, home.nodeInfoPath)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                guard let port = await api.port() else { return }
                printError("Local API: http://\(host):\(port) (token in \(infoPath))")
            }
            try await tasks.waitForAll()
        }
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
            metadata: [
                "room.id": "\(room.roomID)", "events.new": "\(report.accepted.count)", "files": "\(report.filesRead)", "problems": "\(report.problems.count)",
            ])
        for problem in report.problems.prefix(10) {
            logger.warning("Bucket problem", metadata: ["room.id": "\(room.roomID)", "problem": "\(TerminalText.escape(problem))"])
        }
    }

    func roomFailed(_ room: BucketRoom, report: String) { logger.warning("\(TerminalText.escape(report))") }

    func roomRecovered(_ room: BucketRoom, report: String) { logger.notice("\(TerminalText.escape(report))") }

    func relaySynced(relay: String, _ report: RelayClient.RoomReport) {
        logger.info(
            "Relay room synced",
            metadata: [
                "room.id": "\(report.roomID)", "relay": "\(relay)", "events.new": "\(report.accepted)", "events.sent": "\(report.sent)",
                "events.pushed": "\(report.pushed)", "problems": "\(report.problems.count)",
            ])
        for problem in report.problems.prefix(10) {
            logger.warning("Relay problem", metadata: ["room.id": "\(report.roomID)", "problem": "\(TerminalText.escape(problem))"])
        }
    }

    func relayFailed(relay: String, report: String) { logger.warning("\(TerminalText.escape(report))") }

    func relayRecovered(relay: String) { logger.notice("Relay connected again", metadata: ["relay": "\(relay)"]) }

    func flushingBeforeExit(events: Int, rooms: Int) {
        logger.notice("Writing the outbox before exiting", metadata: ["events": "\(events)", "rooms": "\(rooms)"])
    }

    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {
        logger.error(
            "Events stay unsent; the next node or sync writes them",
            metadata: ["room.id": "\(room.roomID)", "events": "\(events)", "reason": "\(TerminalText.escape(reason))"])
    }
}
