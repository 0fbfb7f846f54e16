import ArgumentParser
import Foundation
import Logging
import ParleyAPI
import ParleyClient
import ParleyRelay
import ServiceLifecycle
import Synchronization

/// `parley web --demo`: Alice's and Bob's nodes in this process, each with its own home, sharing a folder bucket, and
/// the page that shows both chats and the traffic between them.
struct WebDemo {
    static let roomID = "demo"
    static let people = [(name: "alice", label: "Alice"), (name: "bob", label: "Bob")]

    /// The demo's folder: the two homes and the bucket.
    var directory: String
    /// Whether the room lives at a relay run here too (`--demo-relay`).
    var withRelay = false

    /// One person of the demo, set up.
    struct Person {
        var name: String
        var label: String
        var client: BucketClient
        var store: ObservedStore
    }

    /// Forwards bucket requests to the demo page once it exists.
    final class TrafficSink: Sendable {
        let server = Mutex<DemoServer?>(nil)

        func record(_ participant: String, _ request: ObservedRequest) {
            server.withLock { $0 }?.record(
                participant: participant, request: request.kind.rawValue, key: request.key, size: request.size, seconds: request.seconds,
                failure: request.failure)
        }
    }

    /// A node's log, and which transport brought each event, for the page.
    struct Observer: NodeRunnerObserver {
        let log: NodeLog
        let participant: String
        let sink: TrafficSink

        func roomSynced(_ room: BucketRoom, _ report: SyncReport) {
            log.roomSynced(room, report)
            sink.server.withLock { $0 }?.arrived(eventIDs: report.accepted, participant: participant, transport: "bucket")
        }

        func relayArrived(roomID: String, eventIDs: [String]) {
            sink.server.withLock { $0 }?.arrived(eventIDs: eventIDs, participant: participant, transport: "relay")
        }

        func roomFailed(_ room: BucketRoom, report: String) { log.roomFailed(room, report: report) }
        func roomRecovered(_ room: BucketRoom, report: String) { log.roomRecovered(room, report: report) }
        func flushingBeforeExit(events: Int, rooms: Int) { log.flushingBeforeExit(events: events, rooms: rooms) }
        func leftUnsent(_ room: BucketRoom, events: Int, reason: String) { log.leftUnsent(room, events: events, reason: reason) }
        func relayFailed(relay: String, report: String) { log.relayFailed(relay: relay, report: report) }
        func relayRecovered(relay: String) { log.relayRecovered(relay: relay) }
    }

    /// The relay of `--demo-relay`: its data in the demo folder, on the port it had last time when that is free, so that the
    /// rooms and sessions that name it stay right.
    func makeRelay() throws -> RelayServer {
        let data = (directory as NSString).appendingPathComponent("relay")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let portFile = (data as NSString).appendingPathComponent("demo-port")
        let last = (try? String(contentsOfFile: portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard let port = ([last].compactMap { $0 } + Array(8470...8570)).first(where: { LocalAPIAccess.isFree(port: $0, host: "127.0.0.1") }) else {
            throw ClientError(.io, "No free port from 8470 to 8570 for the demo's relay.", remedy: "Stop what uses them, or leave out --demo-relay.")
        }
        try "\(port)\n".write(toFile: portFile, atomically: true, encoding: .utf8)
        var settings = RelaySettings(dataDirectory: data)
        settings.port = port
        return try RelayServer(settings: settings, logger: Logger(label: "parley.demo.relay"))
    }

    /// Both people's accounts at the relay, logged in, and the room reached through it too.
    func addRelay(_ origin: String, to people: [Person]) async throws {
        let passwordFile = (directory as NSString).appendingPathComponent("relay/demo-password")
        let password: String
        if let saved = try? String(contentsOfFile: passwordFile, encoding: .utf8) {
            password = saved
        } else {
            password = LocalAPI.newToken()
            try ParleyHome(path: directory).replaceFile(atPath: passwordFile, contents: Array(password.utf8), mode: 0o600)
        }
        for person in people {
            let node = person.client.node
            let relay = RelayClient(node: node)
            if !relay.sessions().contains(where: { $0.relay == origin && $0.expiresMs > node.clock() }) {
                // An account from an earlier run logs in; the first run makes it.
                do {
                    try await relay.login(relay: origin, password: password)
                } catch {
                    try await relay.register(relay: origin, password: password)
                }
            }
            let location = try relay.location(Self.roomID)
            if case .relay(let url)? = location, url == origin { continue }
            _ = try await relay.addRelay(Self.roomID, relay: origin, replacing: location != nil)
        }
    }

    var bucketURL: BucketURL { .folder(path: (directory as NSString).appendingPathComponent("bucket")) }

    /// Creates what is missing: the folder, each person's identity, the room with both in it. A demo folder used before
    /// is taken up where it was left.
    func setUp(sink: TrafficSink) async throws -> [Person] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let bucketURL = bucketURL
        var people: [Person] = []
        for (name, label) in Self.people {
            let home = ParleyHome(path: (directory as NSString).appendingPathComponent(name))
            if !FileManager.default.fileExists(atPath: home.secretKeyPath) { _ = try Identity.create(userID: name, home: home) }
            let node = try Node(home: home, creatingStore: true)
            let store = ObservedStore(try bucketURL.open()) { request in sink.record(name, request) }
            let client = BucketClient(node: node) { url throws(BucketError) in url == bucketURL ? store : try url.open() }
            people.append(Person(name: name, label: label, client: client, store: store))
        }
        let (alice, bob) = (people[0].client, people[1].client)
        if (try? alice.node.roomState(Self.roomID)) == nil {
            printError("Creating room \(Self.roomID) in \(bucketURL.text) and inviting bob…")
            _ = try await alice.createRoom(Self.roomID, bucket: bucketURL, name: "Alice and Bob", createBucket: true)
            _ = try alice.node.invite(Self.roomID, userID: bob.node.identity.userID, key: bob.node.identity.signingKeyBase64)
            _ = try await alice.flush(Self.roomID)
        }
        let bobJoined = (try? bob.node.roomState(Self.roomID))?.isJoinedDevice(user: bob.node.identity.userID, key: bob.node.identity.signingKeyBase64)
        if bobJoined != true {
            guard let code = try alice.inviteCode(Self.roomID) else { throw ClientError(.io, "The demo room has no invite code.") }
            _ = try await bob.join(code)
            _ = try alice.node.send(Self.roomID, text: "Hi Bob! Type here or on your side: each message goes through the bucket.")
        }
        return people
    }

    /// Runs both nodes and the page until SIGINT or SIGTERM; `listening` gets the page's address once all listen.
    func run(listening: @escaping @Sendable (String) -> Void) async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        var locks: [HomeLock] = []
        for (name, _) in Self.people {
            let home = ParleyHome(path: (directory as NSString).appendingPathComponent(name))
            try FileManager.default.createDirectory(atPath: home.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            locks.append(try failing { try home.lockForSyncing("web --demo") })
        }
        defer { withExtendedLifetime(locks) {} }
        let sink = TrafficSink()
        let people = try await failingAsync { try await setUp(sink: sink) }
        // The relay runs beside the nodes, and stops after them.
        var relayRun: Task<Void, any Error>?
        defer { relayRun?.cancel() }
        var relayOrigin: String?
        if withRelay {
            let relay = try failing { try makeRelay() }
            relayRun = Task { try await relay.run() }
            guard await relay.port() != nil else { throw ClientError(.io, "The demo's relay did not start.", remedy: "Run again without --demo-relay.") }
            relayOrigin = relay.accounts.origin
            printError("Relay: \(relay.accounts.origin), data in \((directory as NSString).appendingPathComponent("relay"))")
            try await failingAsync { try await addRelay(relay.accounts.origin, to: people) }
        }
        var services: [any Service] = []
        var participants: [DemoServer.Participant] = []
        var settings = NodeRunner.Settings()
        // Quick to notice a bucket that is back: the demo's switch takes one offline and back at will.
        settings.schedule = BucketSchedule.Settings(pollIntervalMs: 1_000, flushAfterMs: 0, maxDelayMs: 2_000)
        for person in people {
            let logger = Logger(label: "parley.demo.\(person.name)")
            let observer = Observer(log: NodeLog(logger: logger), participant: person.name, sink: sink)
            services.append(NodeRunner(client: person.client, settings: settings, observer: observer, logger: logger))
            let api = LocalAPI(client: person.client, logger: logger)
            services.append(api)
            let store = person.store
            participants.append(
                DemoServer.Participant(
                    name: person.name, label: person.label, api: api, isOnline: { store.isOnline }, setOnline: { store.setOnline($0) }))
        }
        let server = DemoServer(
            participants: participants, bucket: bucketURL.text, relay: relayOrigin, roomID: Self.roomID, logger: Logger(label: "parley.demo"))
        sink.server.withLock { $0 = server }
        services.append(server)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "parley.demo")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                if let url = await server.pageURL() { listening(url) }
            }
            try await tasks.waitForAll()
        }
    }
}
