import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ParleyClient
import ServiceLifecycle
import Synchronization

/// The page of `parley web --demo`: the chat pages of two nodes side by side, in frames, with the traffic between them —
/// every request each node makes of the bucket they share, and each event's way from the store of the node that
/// signed it to the other's, with the time it took.
///
/// Served behind a token of its own, as the local API is; the frames are the nodes' own pages, each behind its node's
/// token, which lets this page's origin frame them (``LocalAPI/allowFraming(by:)``).
public final class DemoServer: Service, Sendable {
    /// One node of the demo.
    public struct Participant: Sendable {
        /// Its name in URLs and traffic entries: `alice`.
        public var name: String
        /// Its name on the page: `Alice`.
        public var label: String
        /// Its local API, whose page the demo page frames.
        public var api: LocalAPI
        /// Whether its bucket answers; the page's switch calls `setOnline`.
        public var isOnline: @Sendable () -> Bool
        public var setOnline: @Sendable (Bool) -> Void

        public init(
            name: String, label: String, api: LocalAPI, isOnline: @escaping @Sendable () -> Bool, setOnline: @escaping @Sendable (Bool) -> Void
        ) {
            self.name = name
            self.label = label
            self.api = api
            self.isOnline = isOnline
            self.setOnline = setOnline
        }

        var node: Node { api.node }

        /// The origin of its page, once its API listens.
        var origin: String? { api.listeningPort.map { "http://\(api.urlHost):\($0)" } }

        /// Its chat page's address, with its token, once its API listens.
        var pageURL: String? { origin.map { "\($0)/?token=\(api.token)" } }
    }

    public let participants: [Participant]
    /// What the nodes share, as the page names it: the bucket's URL, and the relay's when there is one.
    let bucket: String
    let relay: String?
    let roomID: String
    let host: String
    let port: Int
    let token: String
    let logger: Logger
    let listening = ListeningPort()
    let traffic = Mutex(TrafficLog())
    /// The simulation the page started last, if any.
    let simulation = Mutex(DemoSimulation())
    private let nextSubscriber = Atomic<UInt64>(0)

    public init(
        participants: [Participant], bucket: String, relay: String? = nil, roomID: String, host: String = "127.0.0.1", port: Int = 0,
        token: String = LocalAPI.newToken(),
        logger: Logger
    ) {
        self.participants = participants
        self.bucket = bucket
        self.relay = relay
        self.roomID = roomID
        self.host = host
        self.port = port
        self.token = token
        self.logger = logger
    }

    /// The page's address with its token, once it and the nodes' APIs listen; `nil` if one stopped first.
    public func pageURL() async -> String? {
        guard let port = await listening.wait() else { return nil }
        for participant in participants { guard await participant.api.port() != nil else { return nil } }
        return "http://\(urlHost):\(port)/?token=\(token)"
    }

    public func run() async throws {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.add(middleware: Gate(guarded: self))
        addRoutes(to: router)
        let application = Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(ws: .init(maxFrameSize: 1 << 12))),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { [self] channel in
                // The nodes' pages let this page frame them before anyone learns its address.
                if let port = channel.localAddress?.port {
                    for participant in participants { participant.api.allowFraming(by: "http://\(urlHost):\(port)") }
                }
                listening.announce(channel.localAddress?.port)
            },
            logger: logger)
        defer { _ = listening.stop() }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for participant in participants { tasks.addTask { await self.watch(participant) } }
            // The application ends on shutdown; the watches and a running simulation end with it.
            defer {
                tasks.cancelAll()
                simulation.withLock { $0.task }?.cancel()
            }
            try await application.run()
        }
    }

    /// Tells the page which transport brought these events to `participant`'s node.
    public func arrived(eventIDs: [String], participant: String, transport: String) {
        publish { log in eventIDs.compactMap { log.arrived(eventID: $0, by: participant, transport: transport) } }
    }

    /// Tells the page of a bucket request of `participant`'s node.
    public func record(participant: String, request kind: String, key: String, size: Int, seconds: Double, failure: String?) {
        publish { log in log.record(participant: participant, request: kind, key: key, size: size, seconds: seconds, failure: failure) }
    }

    /// Follows a node's activity: each event it stores, and what its transports did with it.
    func watch(_ participant: Participant) async {
        // A subscription cut off for falling behind is followed by a new one: the page misses some traffic, no more.
        while !Task.isCancelled {
            await follow(participant, participant.node.feed.subscribe(backlog: 10_000))
        }
    }

    func follow(_ participant: Participant, _ subscription: NodeFeed.Subscription) async {
        for await activity in subscription.activity {
            switch activity {
            case .events(let roomID, let events):
                for event in events {
                    let sender = participants.first { $0.node.identity.userID == event.senderID }?.name ?? event.senderID
                    publish { log in
                        log.stored(eventID: event.eventID, type: event.type, roomID: roomID, from: sender, by: participant.name, of: self.participants.count)
                    }
                }
            case .sent(_, let eventIDs, let transport):
                publish { log in eventIDs.compactMap { log.sent(eventID: $0, by: participant.name, transport: transport) } }
            case .sendFailed(_, _, let transport, let reason, _), .syncFailed(_, let transport, let reason, _):
                publish { log in [log.note(participant: participant.name, "\(transport): \(reason)")] }
            case .synced, .typing, .receiptWaiting:
                break
            }
        }
    }

    /// Changes the traffic log and sends what changed to every open page.
    func publish(_ change: (inout TrafficLog) -> [JSONValue]) {
        let (message, subscribers): (JSONValue, [AsyncStream<JSONValue>.Continuation]) = traffic.withLock { log in
            let entries = change(&log)
            return (["entries": .array(entries), "stats": log.stats.json], Array(log.subscribers.values))
        }
        for subscriber in subscribers { subscriber.yield(message) }
    }

    func setOnline(_ participant: Participant, _ isOnline: Bool) {
        participant.setOnline(isOnline)
        publish { log in [log.note(participant: participant.name, isOnline ? "back online" : "offline: its bucket requests fail")] }
        let message: JSONValue = ["participants": participantsJSON]
        for subscriber in traffic.withLock({ Array($0.subscribers.values) }) { subscriber.yield(message) }
    }

    var participantsJSON: JSONValue {
        .array(
            participants.map { participant in
                [
                    "name": .string(participant.name), "label": .string(participant.label), "page": participant.pageURL.map(JSONValue.string) ?? .null,
                    "user_id": .string(participant.node.identity.userID), "home": .string(participant.node.home.path),
                    "online": .bool(participant.isOnline()),
                ]
            })
    }
}

extension DemoServer {
    static let files: [String: WebPage.File] = [
        "/": WebPage.File(name: "demo.html", contentType: "text/html; charset=utf-8", bytes: PackageResources.demo_html),
        "/demo.js": WebPage.File(name: "demo.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.demo_js),
        "/demo.css": WebPage.File(name: "demo.css", contentType: "text/css; charset=utf-8", bytes: PackageResources.demo_css),
    ]

    /// As the chat page's, but for frames of the two nodes' pages.
    var contentSecurityPolicy: String {
        let frames = participants.compactMap(\.origin)
        return "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; connect-src 'self'; frame-src \(frames.joined(separator: " ")); "
            + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    }

    func addRoutes(to router: Router<BasicWebSocketRequestContext>) {
        for (path, file) in Self.files {
            router.get(RouterPath(path)) { _, _ in
                let headers: HTTPFields = [
                    .contentType: file.contentType, .contentSecurityPolicy: self.contentSecurityPolicy, .xContentTypeOptions: "nosniff",
                    WebPage.referrerPolicy: "no-referrer", .cacheControl: "no-store",
                ]
                return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.bytes)))
            }
        }
        let demo = router.group("v1/demo")
        demo.get("") { _, _ in
            jsonResponse([
                "bucket": .string(self.bucket), "relay": self.relay.map(JSONValue.string) ?? .null, "room_id": .string(self.roomID),
                "participants": self.participantsJSON,
            ])
        }
        demo.post("participants/:name/online") { request, context in
            let name = try context.parameters.require("name")
            guard let participant = self.participants.first(where: { $0.name == name }) else {
                throw APIError(
                    ClientError(
                        .invalidArgument, "The demo has no node \(name).", remedy: "Use one of: \(self.participants.map(\.name).joined(separator: ", ")).")
                )
            }
            let online = try await Fields(of: request, maxBytes: 1 << 10).bool("online")
            self.setOnline(participant, online)
            return jsonResponse(["name": .string(name), "online": .bool(participant.isOnline())])
        }
        addSimulationRoutes(to: demo)
        demo.ws("traffic") { inbound, outbound, _ in
            try await self.streamTraffic(inbound: inbound, outbound: outbound)
        }
    }

    /// Sends the traffic so far (the newest ``TrafficLog/kept`` entries), then each change, until the page closes; for
    /// a page that falls behind, only the newest 2,000 changes wait, so it costs the server a bounded amount.
    func streamTraffic(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let id = nextSubscriber.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: JSONValue.self, bufferingPolicy: .bufferingNewest(2_000))
        let first: JSONValue = traffic.withLock { log in
            log.subscribers[id] = continuation
            return [
                "entries": .array(Array(log.entries.suffix(TrafficLog.kept))), "stats": log.stats.json, "participants": participantsJSON,
                "simulation": simulation.withLock { $0.json },
            ]
        }
        defer { _ = traffic.withLock { $0.subscribers.removeValue(forKey: id) } }
        try await outbound.write(.text(CanonicalJSON.string(first)))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await message in stream { try await outbound.write(.text(CanonicalJSON.string(message))) }
            }
            group.addTask {
                for try await _ in inbound.messages(maxSize: 1 << 12) {}
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

extension DemoServer: TokenGuarded {
    var urlHost: String { host.contains(":") ? "[\(host)]" : host }

    var listeningPort: Int? { listening.current }

    func isToken(_ candidate: Substring) -> Bool { constantTimeEquals(token, candidate) }

    func unauthorizedPage(path: String) -> Response? {
        guard Self.files[path] != nil else { return nil }
        let html = """
            <!doctype html><html lang="en"><meta charset="utf-8"><title>Parley demo: not signed in</title>
            <h1>This address needs the demo's token</h1>
            <p>Open the address <code>parley web --demo</code> printed (it ends with <code>?token=…</code>).
            Each run of the demo has a new token.</p></html>

            """
        let headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8", .contentSecurityPolicy: WebPage.contentSecurityPolicy(), .xContentTypeOptions: "nosniff",
            WebPage.referrerPolicy: "no-referrer", .cacheControl: "no-store",
        ]
        return Response(status: .unauthorized, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    func countForeignOrigin() {}

    func countUnauthorized() {}
}

/// What the demo page shows of the traffic: the newest entries, the events followed, and totals.
struct TrafficLog {
    /// Entries kept for a page that opens later.
    static let kept = 300
    /// Events followed from one store to the other; the oldest are forgotten.
    static let eventsFollowed = 5_000

    struct FollowedEvent {
        var eventType: String
        var roomID: String
        var from: String
        var wallMs: Int64
        var start: ContinuousClock.Instant
        /// Microseconds from the first store to each participant's.
        var stored: [String: Int64] = [:]
        /// Microseconds from the first store to each transport's confirmation.
        var sent: [String: Int64] = [:]
        /// The transport that brought it to each participant but its sender.
        var via: [String: String] = [:]
    }

    struct Stats {
        var events = 0
        /// Events every participant stored.
        var delivered = 0
        /// The newest delivery latencies (µs), for the percentiles.
        var latencies: [Int64] = []
        var requests: [String: Int] = [:]
        var bytesWritten = 0
        var bytesRead = 0
        var failures = 0

        var json: JSONValue {
            let sorted = latencies.sorted()
            func percentile(_ p: Double) -> JSONValue {
                sorted.isEmpty ? .null : .integer(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))])
            }
            return [
                "events": .integer(Int64(events)), "delivered": .integer(Int64(delivered)), "latency_p50_us": percentile(0.5),
                "latency_p95_us": percentile(0.95), "latency_last_us": latencies.last.map(JSONValue.integer) ?? .null,
                "requests": object(requests.mapValues { .integer(Int64($0)) }), "bytes_written": .integer(Int64(bytesWritten)),
                "bytes_read": .integer(Int64(bytesRead)), "failures": .integer(Int64(failures)),
            ]
        }
    }

    var entries: [JSONValue] = []
    var followed: [String: FollowedEvent] = [:]
    var followOrder: [String] = []
    var stats = Stats()
    var subscribers: [UInt64: AsyncStream<JSONValue>.Continuation] = [:]

    mutating func add(_ entry: JSONValue) -> [JSONValue] {
        entries.append(entry)
        if entries.count > 2 * Self.kept { entries.removeFirst(entries.count - Self.kept) }
        return [entry]
    }

    static var wallMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    mutating func record(participant: String, request kind: String, key: String, size: Int, seconds: Double, failure: String?) -> [JSONValue] {
        stats.requests[kind, default: 0] += 1
        if failure != nil {
            stats.failures += 1
        } else if kind == "put" {
            stats.bytesWritten += size
        } else if kind == "get" {
            stats.bytesRead += size
        }
        return add([
            "kind": "request", "participant": .string(participant), "op": .string(kind), "key": .string(key), "size": .integer(Int64(size)),
            "us": .integer(Int64(seconds * 1e6)), "failure": failure.map(JSONValue.string) ?? .null, "at_ms": .integer(Self.wallMs),
        ])
    }

    /// `participant` stored an event of `sender`'s; an event first seen at another's store than its sender's (it was
    /// stored before the demo watched) is followed from there.
    mutating func stored(eventID: String, type: String, roomID: String, from sender: String, by participant: String, of participants: Int)
        -> [JSONValue]
    {
        let now = ContinuousClock.now
        guard var followed = followed[eventID] else {
            stats.events += 1
            var new = FollowedEvent(eventType: type, roomID: roomID, from: sender, wallMs: Self.wallMs, start: now)
            new.stored[participant] = 0
            self.followed[eventID] = new
            followOrder.append(eventID)
            if followOrder.count > Self.eventsFollowed {
                let forgotten = followOrder.count - Self.eventsFollowed
                for id in followOrder.prefix(forgotten) { self.followed[id] = nil }
                followOrder.removeFirst(forgotten)
            }
            return add(Self.json(eventID, new))
        }
        guard followed.stored[participant] == nil else { return [] }
        followed.stored[participant] = Self.microseconds(now - followed.start)
        self.followed[eventID] = followed
        if followed.stored.count == participants {
            stats.delivered += 1
            stats.latencies.append(followed.stored[participant]!)
            if stats.latencies.count > 1_000 { stats.latencies.removeFirst(stats.latencies.count - 1_000) }
        }
        return add(Self.json(eventID, followed))
    }

    mutating func sent(eventID: String, by participant: String, transport: String) -> JSONValue? {
        guard var followed = followed[eventID], followed.sent[transport] == nil else { return nil }
        followed.sent[transport] = Self.microseconds(ContinuousClock.now - followed.start)
        self.followed[eventID] = followed
        return add(Self.json(eventID, followed)).first
    }

    mutating func arrived(eventID: String, by participant: String, transport: String) -> JSONValue? {
        guard var followed = followed[eventID], followed.via[participant] == nil else { return nil }
        followed.via[participant] = transport
        self.followed[eventID] = followed
        return add(Self.json(eventID, followed)).first
    }

    mutating func note(participant: String, _ text: String) -> JSONValue {
        add(["kind": "note", "participant": .string(participant), "text": .string(text), "at_ms": .integer(Self.wallMs)])[0]
    }

    static func json(_ eventID: String, _ event: FollowedEvent) -> JSONValue {
        [
            "kind": "event", "event_id": .string(eventID), "event_type": .string(event.eventType), "room_id": .string(event.roomID),
            "from": .string(event.from), "at_ms": .integer(event.wallMs), "stored_us": object(event.stored.mapValues(JSONValue.integer)),
            "sent_us": object(event.sent.mapValues(JSONValue.integer)), "via": object(event.via.mapValues(JSONValue.string)),
        ]
    }

    static func microseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
    }
}

/// A JSON object of `fields`.
private func object(_ fields: [String: JSONValue]) -> JSONValue {
    var object = JSONObject()
    for (key, value) in fields { object[key] = value }
    return .object(object)
}
