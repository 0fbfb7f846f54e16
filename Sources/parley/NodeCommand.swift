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

            The node serves its local API and web page (docs/API.md) on --api-host (127.0.0.1) and --api-port (0: the last \
            port if free, else a free one), and \
            writes the address and its token to node.json in the home, readable by its owner only. The token and the port \
            stay the same from one start to the next (--new-token makes a new token): an open page reconnects.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await options.runNode(global: global) { url, infoPath in printError("Local API: \(url) (token in \(infoPath))") }
    }
}

/// How a node runs: `parley node`'s options, which `parley web` takes too.
struct NodeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Seconds between syncs of each room (default: sync.interval, 1).") var interval: Double?
    @Option(name: .customLong("flush-after"), parsing: .unconditional, help: "Seconds an event of this device may wait before it is written.")
    var flushAfter = 0.0
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: node.log_level, info).")
    var logLevel: String?
    @Option(name: .customLong("api-host"), help: "The address the local API listens on (default: node.api_host, 127.0.0.1).") var apiHost: String?
    @Option(name: .customLong("api-port"), help: "The local API's port; 0 takes the last one if free, else a free one (default: node.api_port, 0).")
    var apiPort: Int?
    @Flag(name: .customLong("new-token"), help: "Give the local API a new token: pages and scripts holding the old one are shut out.")
    var newToken = false
    @Option(
        name: .customLong("listen-udp"),
        help: "The UDP address (HOST:PORT) to sync peer rooms on (`parley peer`); none: no peers (default: peers.listen, none).")
    var listenUDP: String?
    @Option(help: "How peers find what the other lacks: reconcile or bloom (default: peers.sync, reconcile).") var sync: String?
    @Option(
        help:
            "Announce this node's rooms on the LAN and find their peers there, on this multicast group (HOST:PORT, as 239.255.77.77:7799); none: off (default: peers.discover, none)."
    )
    var discover: String?

    func validate() throws {
        if let interval, !(interval > 0 && interval <= 86_400) {
            throw ValidationError("--interval must be above 0 and at most 86400 seconds; it was \(interval).")
        }
        guard flushAfter >= 0 && flushAfter <= 86_400 else { throw ValidationError("--flush-after must be from 0 to 86400 seconds; it was \(flushAfter).") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of \(Setting.logLevels.joined(separator: ", ")); it was \(TerminalText.escape(logLevel)).")
        }
    }

    /// The settings these flags give.
    var flags: [Setting: SettingValue] {
        var flags: [Setting: SettingValue] = [:]
        if let interval { flags[.syncInterval] = .seconds(interval) }
        if let logLevel { flags[.nodeLogLevel] = .text(logLevel) }
        if let apiHost { flags[.nodeAPIHost] = .text(apiHost) }
        if let apiPort { flags[.nodeAPIPort] = .integer(apiPort) }
        if let listenUDP { flags[.peersListen] = listenUDP.lowercased() == "none" ? .unset : .text(listenUDP) }
        if let sync { flags[.peersSync] = .text(sync) }
        if let discover { flags[.peersDiscover] = discover.lowercased() == "none" ? .unset : .text(discover) }
        return flags
    }

    /// Runs the home's node until SIGINT or SIGTERM; `listening` is called with the API's URL and the path of
    /// node.json once the API listens, and `started` with the service group, which a caller can shut down gracefully.
    func runNode(
        global: GlobalOptions, started: @escaping @Sendable (ServiceGroup) -> Void = { _ in },
        listening: @escaping @Sendable (_ url: String, _ infoPath: String) -> Void
    ) async throws {
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
        settings.listenUDP = configuration.peersListen
        settings.peers.mode = PeerSettings.Mode(rawValue: configuration.peersSync) ?? .reconcile
        settings.peers.intervalMs = Int64(configuration.peersInterval * 1000)
        settings.fetchPeerFiles = configuration.peersFetchFiles
        settings.discoverGroup = configuration.peersDiscover
        let runner = NodeRunner(client: client, settings: settings, observer: NodeLog(logger: logger), logger: logger)
        var apiSettings = LocalAPI.Settings()
        apiSettings.host = configuration.apiHost
        apiSettings.webAssetsFolder = ProcessInfo.processInfo.environment["PARLEY_WEB_ASSETS"].flatMap { $0.isEmpty ? nil : $0 }
        let access = try failing { try LocalAPIAccess.load(home: home, renewingToken: newToken) }
        // The same address and token as last time, so that open pages reconnect to a restarted node.
        apiSettings.port = configuration.apiPort
        if apiSettings.port == 0, let last = access.port, LocalAPIAccess.isFree(port: last, host: apiSettings.host) { apiSettings.port = last }
        let api = LocalAPI(client: client, settings: apiSettings, logger: Logger(label: "parley.api"), token: access.token)
        printError("Node running for \(home.path) (pid \(getpid())); stop it with Ctrl-C or `kill \(getpid())`.")
        var groupConfiguration = ServiceGroupConfiguration(services: [runner, api], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A node asked to stop stops: the outbox gets its 10 s (`exitFlushSeconds`), and a client holding a connection
        // open cannot keep the node past 20 s, when what is left is cancelled.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(20)
        let group = ServiceGroup(configuration: groupConfiguration)
        let (host, infoPath) = (apiSettings.host.contains(":") ? "[\(apiSettings.host)]" : apiSettings.host, home.nodeInfoPath)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            started(group)
            tasks.addTask {
                guard let port = await api.port() else { return }
                do {
                    try LocalAPIAccess(token: access.token, port: port).save(home: home)
                } catch {
                    logger.warning("Cannot remember the local API's port", metadata: ["error": "\(ClientError(describing: error).message)"])
                }
                listening("http://\(host):\(port)", infoPath)
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

    func peersListening(address: String) { logger.notice("Peers listening", metadata: ["address": "\(address)"]) }

    func peersFailed(report: String) { logger.error("\(TerminalText.escape(report))") }

    func flushingBeforeExit(events: Int, rooms: Int) {
        logger.notice("Writing the outbox before exiting", metadata: ["events": "\(events)", "rooms": "\(rooms)"])
    }

    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {
        logger.error(
            "Events stay unsent; the next node or sync writes them",
            metadata: ["room.id": "\(room.roomID)", "events": "\(events)", "reason": "\(TerminalText.escape(reason))"])
    }
}

/// The local API's token and last port, kept in the home (`local-api.json`, readable by its owner only) so that a
/// page left open across a restart of the node reconnects.
struct LocalAPIAccess {
    var token: String
    var port: Int?

    static func path(_ home: ParleyHome) -> String { home.url.appendingPathComponent("local-api.json").path }

    /// The remembered token and port; a new token when there is none yet, the file is damaged, or `renewingToken`.
    static func load(home: ParleyHome, renewingToken: Bool) throws -> LocalAPIAccess {
        if !renewingToken, let data = FileManager.default.contents(atPath: path(home)),
            case .object(let fields)? = try? JSONParser().parse(Array(data.prefix { $0 != 0x0A })),
            let token = fields["token"]?.stringValue, token.utf8.count == 64, token.utf8.allSatisfy({ $0 < 0x80 && isxdigit(Int32($0)) != 0 })
        {
            return LocalAPIAccess(token: token, port: fields["port"]?.integerValue.map { Int($0) })
        }
        let access = LocalAPIAccess(token: LocalAPI.newToken(), port: nil)
        try access.save(home: home)
        return access
    }

    func save(home: ParleyHome) throws {
        let fields: JSONValue = port.map { ["token": .string(token), "port": .integer(Int64($0))] } ?? ["token": .string(token)]
        try home.replaceFile(atPath: Self.path(home), contents: CanonicalJSON.encode(fields) + [0x0A], mode: 0o600)
    }

    /// Whether nothing listens on `port` of `host` now (it may be taken before the API binds it; then the API fails
    /// to start and says so).
    static func isFree(port: Int, host: String) -> Bool {
        guard (1...65_535).contains(port) else { return false }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let address = found else { return false }
        defer { freeaddrinfo(found) }
        let descriptor = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        return bind(descriptor, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0
    }
}
