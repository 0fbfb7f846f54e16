import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import ParleyCore
import ParleyStore
import ServiceLifecycle
import Synchronization

/// The request context of the relay's routes: a WebSocket-capable context that knows the client's address (for
/// per-address limits).
public struct RelayRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<Self>
    public let remoteAddress: SocketAddress?
    /// The connection, closed outright when its peer neither reads nor answers a close.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// The client's IP address, as limits count it.
    var clientAddress: String { remoteAddress?.ipAddress ?? "unknown" }
}

/// A relay (docs/PROTOCOL.md §15): accounts over HTTP, events over WebSocket, judged and kept by a node's store, and
/// pushed to every member connected. A `Service`: run it in a `ServiceGroup`, whose graceful shutdown (SIGTERM) stops
/// taking connections and closes the open ones.
public final class RelayServer: Service, Sendable {
    public let settings: RelaySettings
    public let accounts: RelayAccounts
    public let events: RelayEvents
    /// The blocks of files shared in its rooms.
    public let blocks: RelayBlocks
    /// The database shared with the deployment's other relays, if any.
    public let database: RelayDatabase?
    let hub = RelayHub()
    let logger: Logger
    let nextConnection = Atomic<Int>(0)
    let metrics = RelayMetrics()
    /// Per account, its allowance of published events and bytes.
    let publishAllowances = Mutex<[String: (events: LoginLimits.Bucket, bytes: LoginLimits.Bucket)]>([:])
    /// The last delivery figures `/metrics` gave, and when (Unix ms).
    let deliveryCache = Mutex<(atMs: Int64, text: String)?>(nil)
    /// Per account, its allowance of HTTP reads (queries and block downloads).
    let readAllowances = Mutex<[String: LoginLimits.Bucket]>([:])
    /// How far into the shared log the relay's store goes, and when that was last written down.
    let sharedLog = Mutex<(position: Int64, savedAt: ContinuousClock.Instant?)>((0, nil))
    private let listening = Mutex<(port: Int?, waiters: [CheckedContinuation<Int?, Never>], stopped: Bool)>((nil, [], false))

    /// What the relay has done since it started, for tests and tools; `/metrics` exports the same figures.
    public struct Counters: Sendable, Equatable {
        /// Authenticated connections ever, and open now.
        public var connections = 0
        public var open = 0
        public var eventsIn = 0
        public var eventsOut = 0
        public var rejections: [String: Int] = [:]
        public var loginFailures = 0
        public var badFrames = 0
        public var slowConsumers = 0
        public var blockBytesIn = 0
        public var blockBytesOut = 0
    }

    /// Opens the relay's data in `settings.dataDirectory` (made, mode 0700, if missing).
    public init(settings: RelaySettings, logger: Logger) throws {
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.settings = settings
        self.logger = logger
        if let url = settings.databaseURL {
            let database = try RelayDatabase(url: url, logger: logger)
            self.database = database
            accounts = RelayAccounts(store: PostgresAccountStore(database: database), settings: settings)
        } else {
            database = nil
            accounts = RelayAccounts(store: try AccountStore(path: settings.dataDirectory + "/accounts.sqlite"), settings: settings)
        }
        let eventsPath = settings.dataDirectory + "/events.sqlite"
        // A store made anew holds nothing of the shared log, whatever position an earlier one reached.
        if !FileManager.default.fileExists(atPath: eventsPath) { try? FileManager.default.removeItem(atPath: settings.dataDirectory + "/shared-log-position") }
        events = RelayEvents(store: try EventStore(path: eventsPath))
        blocks = try RelayBlocks(directory: settings.dataDirectory, quotaBytes: settings.blockQuotaBytes)
    }

    public var counts: Counters { metrics.snapshot }
    /// Authenticated connections open now.
    public var openConnections: Int { hub.openConnections }
    /// Connections cut off so far because their client did not read.
    public var slowConsumers: Int { counts.slowConsumers }

    /// The port the relay listens on, once it does; `nil` if it stopped before listening.
    public func port() async -> Int? {
        await withCheckedContinuation { continuation in
            let ready: Int?? = listening.withLock { state in
                if state.port != nil || state.stopped { return .some(state.port) }
                state.waiters.append(continuation)
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    public func run() async throws {
        // Whoever waits for the port hears of a run that failed before listening, too.
        defer { stopped() }
        guard let database else { return try await serve() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await database.run() }
            defer { group.cancelAll() }
            try await prepare(database)
            group.addTask { await self.follow(database) }
            try await serve()
        }
    }

    private func serve() async throws {
        let router = Router(context: RelayRequestContext.self)
        addRoutes(to: router)
        var server: HTTPServerBuilder = .http1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: .init(
                ws: .init(
                    maxFrameSize: RelayFrame.maxFrameBytes, autoPing: .enabled(timePeriod: .seconds(max(1, settings.pingIntervalSeconds))),
                    validateUTF8: true)))
        if let tls = try tlsConfiguration() { server = try .tls(server, tlsConfiguration: tls) }
        let application = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            onServerRunning: { [self] channel in self.started(port: channel.localAddress?.port) },
            logger: logger)
        try await application.run()
    }

    /// The server's TLS configuration from the certificate and key files, when both are given.
    /// - Throws: ``RelayError`` `invalid_configuration` naming a file that cannot be read or is not PEM.
    public func tlsConfiguration() throws -> TLSConfiguration? {
        guard let certificate = settings.tlsCertificatePath, let key = settings.tlsKeyPath else {
            guard settings.tlsCertificatePath == nil, settings.tlsKeyPath == nil else {
                throw RelayError(
                    "invalid_configuration", "TLS needs both a certificate and its private key.", remedy: "Give --tls-cert and --tls-key together.",
                    status: .internalServerError)
            }
            return nil
        }
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
        } catch {
            throw RelayError(
                "invalid_configuration", "Cannot read the TLS certificate \(certificate) or key \(key): \(error).",
                remedy: "Give PEM files this user can read.", status: .internalServerError)
        }
    }

    private func started(port: Int?) {
        if let port, settings.publicURL == nil {
            let scheme = settings.tlsCertificatePath == nil ? "http" : "https"
            accounts.boundOrigin.withLock { $0 = "\(scheme)://\(settings.host.contains(":") ? "[\(settings.host)]" : settings.host):\(port)" }
        }
        logger.info("Relay listening", metadata: ["origin": "\(accounts.origin)", "data": "\(settings.dataDirectory)"])
        let waiters = listening.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    private func stopped() {
        let waiters = listening.withLock { state in
            state.stopped = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    // MARK: HTTP

    func addRoutes(to router: Router<RelayRequestContext>) {
        router.get("health") { _, _ in jsonResponse(["status": "ok"]) }
        router.get("metrics") { _, _ in
            // Off the events queue, and at most every 30 s: the delivery figures read the receipts of many rooms.
            let delivery = (try? await Self.onQueryQueue { try self.deliveryMetrics() }) ?? ""
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: self.metrics.text() + delivery)))
        }
        let v1 = router.group("v1")
        v1.post("accounts") { request, context in
            let body = try await Self.body(request)
            try await self.accounts.register(
                userID: try Self.string(body, "user_id"), password: try Self.string(body, "password"), invite: body["invite"]?.stringValue)
            return jsonResponse(["user_id": body["user_id"] ?? .null], status: .created)
        }
        v1.post("sessions") { request, context in
            let body = try await Self.body(request)
            do {
                let session = try await self.accounts.login(
                    userID: try Self.string(body, "user_id"), password: try Self.string(body, "password"), from: context.clientAddress)
                return jsonResponse(["token": .string(session.token), "expires_ms": .integer(session.expiresMs)], status: .created)
            } catch let error as RelayError {
                if error.code == "invalid_credentials" || error.code == "rate_limited" { self.metrics.record(.loginFailed) }
                throw error
            }
        }
        v1.delete("sessions/current") { request, _ in
            let (token, _) = try await self.session(request)
            try await self.accounts.logout(token: token)
            return Response(status: .noContent)
        }
        v1.delete("sessions") { request, _ in
            let (_, userID) = try await self.session(request)
            try await self.accounts.logoutEverywhere(userID: userID)
            return Response(status: .noContent)
        }
        v1.put("accounts/password") { request, _ in
            let (token, userID) = try await self.session(request)
            let body = try await Self.body(request)
            try await self.accounts.changePassword(
                userID: userID, old: try Self.string(body, "password"), new: try Self.string(body, "new_password"), keeping: token)
            return Response(status: .noContent)
        }
        v1.post("accounts/delete") { request, _ in
            let (_, userID) = try await self.session(request)
            let body = try await Self.body(request)
            try await self.accounts.deleteAccount(userID: userID, password: try Self.string(body, "password"))
            return Response(status: .noContent)
        }
        v1.post("devices/challenge") { request, _ in
            let (_, userID) = try await self.session(request)
            return jsonResponse(["challenge": try await self.accounts.challenge(userID: userID).json], status: .created)
        }
        v1.post("devices") { request, _ in
            let (_, userID) = try await self.session(request)
            let body = try await Self.body(request)
            let challenge: RelayChallenge
            do throws(RelayProtocolError) { challenge = try RelayChallenge(json: body["challenge"] ?? .null) } catch {
                throw RelayError.invalidRequest(error.message)
            }
            try await self.accounts.addDevice(
                userID: userID, challenge: challenge, deviceKey: try Self.string(body, "device_key"), signature: try Self.string(body, "signature"))
            return jsonResponse(["device_key": body["device_key"] ?? .null, "user_id": .string(userID)], status: .created)
        }
        v1.get("rooms/:room/query") { request, context in
            let roomID = try context.parameters.require("room")
            let (userID, deviceKey) = try await self.device(of: request)
            try self.admitRead(userID: userID)
            var parameters = request.uri.queryParameters.map { (name: String($0.key), value: String($0.value)) }
            if let refused = parameters.first(where: { $0.name == "room" || $0.name == "text" }) {
                throw RelayError.invalidRequest(
                    refused.name == "room"
                        ? "The room is the one in the path; give no room parameter."
                        : "The relay does not search text: a member's node holds the room's events and searches them (parley query --text).")
            }
            parameters.append((name: "room", value: roomID))
            let query: EventQuery
            do { query = try EventQuery(parameters: parameters) } catch let error as StoreError { throw RelayError.invalidRequest(error.description) }
            let store = self.events.store
            // Off the events queue, so that no query holds up a publish: reads see the store as of their start.
            let (hits, next) = try await Self.onQueryQueue { () throws -> ([QueryHit], QueryCursor?) in
                guard let state = try store.roomState(roomID: roomID), RelayEvents.canRead(state, userID: userID, deviceKey: deviceKey) else {
                    throw RelayError(
                        "not_member", "This device of \(userID) does not read \(roomID) on this relay.",
                        remedy: "Join the room with this device first; only its members can query it.", status: .forbidden)
                }
                return try store.query(query)
            }
            // At most so many bytes of events an answer: the page ends early, and its cursor reads on from there.
            var events: [JSONValue] = []
            var bytes = 0
            var cursor = next
            for hit in hits {
                let wire = hit.event.wireBytes()
                if !events.isEmpty && bytes + wire.count > Self.maxQueryAnswerBytes {
                    cursor = QueryCursor(roomID: roomID, order: EventOrder(hits[events.count - 1].event))
                    break
                }
                bytes += wire.count
                events.append(.object(hit.event.jsonObject()))
            }
            return jsonResponse(["events": .array(events), "next_cursor": cursor.map { .string($0.text) } ?? .null])
        }
        v1.post("rooms/:room/blocks/missing") { request, context in
            let roomID = try context.parameters.require("room")
            try await self.requireReader(request, roomID: roomID)
            guard case .array(let listed)? = try await Self.body(request)["blocks"], listed.count <= Self.maxBlocksAsked else {
                throw RelayError.invalidRequest("Give {\"blocks\": [ids]}, at most \(Self.maxBlocksAsked) block ids (64 lowercase hex digits each).")
            }
            let ids = try listed.map { value in
                guard let id = value.stringValue.flatMap(BlockID.init(hex:)) else { throw RelayError.invalidRequest("A block id is 64 lowercase hex digits.") }
                return id
            }
            let missing = try self.blocks.missing(ids, roomID: roomID)
            return jsonResponse(["missing": .array(missing.map { .string($0.hex) })])
        }
        v1.put("rooms/:room/blocks/:block") { request, context in
            let roomID = try context.parameters.require("room")
            let id = try Self.blockID(context)
            let userID = try await self.requireReader(request, roomID: roomID)
            guard self.blocks.admitUpload() else {
                throw RelayError(
                    "busy", "The relay is receiving as many blocks as it takes at once.", remedy: "Send it again in a moment.", status: .serviceUnavailable)
            }
            defer { self.blocks.uploadDone() }
            var request = request
            let body: ByteBuffer
            do { body = try await request.collectBody(upTo: BlockTier.huge.byteCount) } catch {
                throw RelayError("too_large", "A block is at most 16 MiB.", status: .contentTooLarge)
            }
            let stored = try self.blocks.put(Array(body.readableBytesView), id: id, roomID: roomID, userID: userID, nowMs: Self.nowMs())
            if stored == .created { self.metrics.record(.blockBytesIn(body.readableBytes)) }
            return jsonResponse(
                ["block": .string(id.hex), "stored": .string(stored == .created ? "created" : "existed")], status: stored == .created ? .created : .ok)
        }
        v1.delete("rooms/:room/blocks/:block") { request, context in
            let roomID = try context.parameters.require("room")
            let id = try Self.blockID(context)
            // The uploader takes its blocks back even after leaving the room: no membership is asked.
            let (userID, _) = try await self.device(of: request)
            try self.admitRead(userID: userID)
            try self.blocks.delete(id, roomID: roomID, userID: userID)
            return jsonResponse(["block": .string(id.hex), "deleted": .bool(true)])
        }
        v1.get("rooms/:room/blocks/:block") { request, context in
            let roomID = try context.parameters.require("room")
            let id = try Self.blockID(context)
            try await self.requireReader(request, roomID: roomID)
            guard let file = try self.blocks.file(of: id, roomID: roomID), let bytes = FileManager.default.contents(atPath: file) else {
                throw RelayError(
                    "not_found", "\(roomID) holds no block \(id.hex.prefix(16))… on this relay.", remedy: "Its sender uploads it before the message.",
                    status: .notFound)
            }
            var range = 0..<bytes.count
            var status = HTTPResponse.Status.ok
            var headers: HTTPFields = [.contentType: "application/octet-stream", .cacheControl: "no-store", .acceptRanges: "bytes"]
            if let asked = request.headers[.range] {
                guard let parsed = Self.byteRange(asked, length: bytes.count) else {
                    headers[.contentRange] = "bytes */\(bytes.count)"
                    return Response(status: .rangeNotSatisfiable, headers: headers)
                }
                range = parsed
                status = .partialContent
                headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(bytes.count)"
            }
            self.metrics.record(.blockBytesOut(range.count))
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes[range])))
        }
        v1.ws(
            "ws",
            shouldUpgrade: { request, _ in
                // A page of another site may make a browser open this socket: its Origin gives it away. Clients outside
                // a browser send none, or a ws:// one, which no browser sends.
                if let origin = request.headers[values: .origin].first(where: { self.isForeignPage($0) }) {
                    throw RelayError(
                        "foreign_origin", "WebSocket connections from pages of \(origin.prefix(200)) are refused.",
                        remedy: "Add the origin to the relay's allowed origins.", status: .forbidden)
                }
                return .upgrade([:])
            },
            onUpgrade: { inbound, outbound, context in
                try await self.session(
                    inbound: inbound, outbound: outbound, channel: context.requestContext.channel, address: context.requestContext.clientAddress)
            })
    }

    /// Whether `origin` is a web page's (`http://…`, `https://…`, or `null`) that the relay's settings do not allow.
    func isForeignPage(_ origin: String) -> Bool {
        guard !origin.hasPrefix("ws://"), !origin.hasPrefix("wss://") else { return false }
        return !settings.allowedOrigins.contains(origin)
    }

    /// The request's body as a JSON object, at most 16 KiB.
    static func body(_ request: Request) async throws -> JSONObject {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: 16_384) } catch {
            throw RelayError("too_large", "The request body is larger than 16 KiB.", status: .contentTooLarge)
        }
        guard case .object(let object)? = try? JSONParser(maxDepth: 4, maxBytes: 16_384).parse(Array(buffer.readableBytesView)) else {
            throw RelayError.invalidRequest("The request body is not a JSON object.")
        }
        return object
    }

    static func string(_ object: JSONObject, _ name: String) throws -> String {
        guard case .string(let text)? = object[name] else { throw RelayError.invalidRequest("\(name) is missing or not a string.") }
        return text
    }

    /// The account and the device a request reads as: a session token and, in the `Parley-Device` header, one of the
    /// account's devices.
    func device(of request: Request) async throws -> (userID: String, deviceKey: String) {
        let (_, userID) = try await session(request)
        // As over the socket, a device of the account that the room binds to it reads the room.
        guard let deviceKey = request.headers[Self.deviceHeader], (try? await accounts.store.deviceOwner(key: deviceKey)) == userID else {
            throw RelayError(
                "unknown_device", "Name one of this account's devices in the \(Self.deviceHeader) header.",
                remedy: "Add the device to the account first (POST /v1/devices).", status: .forbidden)
        }
        return (userID, deviceKey)
    }

    /// The account of a request whose device reads `roomID` as it would over the socket.
    @discardableResult
    func requireReader(_ request: Request, roomID: String) async throws -> String {
        let (userID, deviceKey) = try await device(of: request)
        try admitRead(userID: userID)
        guard let state = try events.store.roomState(roomID: roomID), RelayEvents.canRead(state, userID: userID, deviceKey: deviceKey) else {
            throw RelayError(
                "not_member", "This device of \(userID) does not read \(roomID) on this relay.",
                remedy: "Join the room with this device first; only its members move its files.", status: .forbidden)
        }
        return userID
    }

    static func blockID(_ context: RelayRequestContext) throws -> BlockID {
        guard let id = BlockID(hex: try context.parameters.require("block")) else {
            throw RelayError.invalidRequest("A block id is 64 lowercase hex digits.")
        }
        return id
    }

    /// One range of `Range: bytes=FIRST-[LAST]` or `bytes=-SUFFIX` within `length` bytes; `nil` when it is not one.
    static func byteRange(_ header: String, length: Int) -> Range<Int>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let parts = header.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        if parts[0].isEmpty {
            guard let suffix = Int(parts[1]), suffix > 0 else { return nil }
            return max(0, length - suffix)..<length
        }
        guard let first = Int(parts[0]), first < length else { return nil }
        let last = parts[1].isEmpty ? length - 1 : Int(parts[1]).map { min($0, length - 1) }
        guard let last, last >= first else { return nil }
        return first..<(last + 1)
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The most block ids one `blocks/missing` request asks about.
    static let maxBlocksAsked = 200

    /// How many of the relay's most recently active rooms, and of each device's newest messages in them, the delivery
    /// figures look at.
    static let deliveryRooms = 50
    static let deliveryMessages = 200
    /// How long a scrape's delivery figures serve the next scrapes.
    static let deliveryCacheSeconds: Int64 = 30

    /// The delivery summary `/metrics` adds: for the newest messages of every joined device in the most recently active
    /// rooms, how long after each another device's receipt covered it, and the message-and-device pairs by state. Only
    /// receipts in clear count: a sealed one (encrypted rooms) the relay cannot open, and its rooms show as awaiting.
    func deliveryMetrics() throws -> String {
        let now = RelayAccounts.nowMs()
        if let cached = deliveryCache.withLock({ $0 }), now - cached.atMs < Self.deliveryCacheSeconds * 1000 { return cached.text }
        let store = events.store
        var latencies: [Int64] = []
        var pairs = (awaiting: 0, delivered: 0, read: 0)
        for roomID in try store.recentlyActiveRooms(limit: Self.deliveryRooms) {
            guard let state = try store.roomState(roomID: roomID) else { continue }
            let devices = Set(state.joinedMembers.flatMap(\.devices.keys))
            for chain in devices.sorted() {
                let found = try store.deliveryLatencies(roomID: roomID, chainKey: chain, devices: devices, limit: Self.deliveryMessages)
                latencies += found.latenciesMs
                pairs.awaiting += found.awaiting
                pairs.delivered += found.latenciesMs.count - found.read
                pairs.read += found.read
            }
        }
        var lines = [
            "# HELP parley_relay_delivery_latency_seconds From a message's sending to another device's receipt covering it (receipts in clear; newest \(Self.deliveryMessages) messages per device of the \(Self.deliveryRooms) most recently active rooms).",
            "# TYPE parley_relay_delivery_latency_seconds summary",
        ]
        lines += LatencySummary.lines("parley_relay_delivery_latency_seconds", labels: "", latenciesMs: latencies)
        lines += [
            "# HELP parley_relay_message_deliveries Message-and-device pairs of those messages by state: awaiting (no receipt in clear yet), delivered, read.",
            "# TYPE parley_relay_message_deliveries gauge",
            "parley_relay_message_deliveries{state=\"awaiting\"} \(pairs.awaiting)",
            "parley_relay_message_deliveries{state=\"delivered\"} \(pairs.delivered)",
            "parley_relay_message_deliveries{state=\"read\"} \(pairs.read)",
        ]
        let text = lines.joined(separator: "\n") + "\n"
        deliveryCache.withLock { $0 = (now, text) }
        return text
    }

    /// The header naming the device a query reads as.
    static let deviceHeader = HTTPField.Name("Parley-Device")!
    /// The most bytes of events one query answer carries.
    static let maxQueryAnswerBytes = 4 << 20
    private static let queryQueue = DispatchQueue(label: "parley.relay.queries")

    /// Runs a query's reads one at a time, on a queue of their own.
    static func onQueryQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queryQueue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    func session(_ request: Request) async throws -> (token: String, userID: String) {
        guard let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer ") else { throw RelayError.unauthorized }
        let token = String(authorization.dropFirst("Bearer ".count))
        guard token.utf8.count == 64, let userID = try await accounts.user(token: token) else { throw RelayError.unauthorized }
        return (token, userID)
    }

    /// Takes one read (a query, a block's download or upload, a list of missing blocks) from the account's allowance
    /// (``RelaySettings/readsPerSecond``, bursts of ten seconds' worth), or refuses it with `rate_limited` (429).
    func admitRead(userID: String) throws {
        let now = RelayAccounts.nowMs()
        let rate = settings.readsPerSecond
        let admitted = readAllowances.withLock { allowances in
            var bucket = LoginLimits.refilled(allowances[userID], burst: rate * 10, refillMs: 1000 / rate, nowMs: now)
            defer {
                if allowances.count >= LoginLimits.maxEntries { allowances.removeAll(keepingCapacity: true) }
                allowances[userID] = bucket
            }
            guard bucket.tokens >= 1 else { return false }
            bucket.tokens -= 1
            return true
        }
        guard admitted else {
            throw RelayError(
                "rate_limited", "This account asks the relay more than \(Int(rate)) times a second.", remedy: "Ask again in a moment.",
                status: .tooManyRequests)
        }
    }

    /// Takes `events` events and `bytes` bytes from the account's allowance (token buckets of a second's worth,
    /// bursts of ten seconds' worth), or refuses them all.
    func admitPublish(userID: String, events: Int, bytes: Int) -> Bool {
        let now = RelayAccounts.nowMs()
        let (eventRate, byteRate) = (settings.publishEventsPerSecond, settings.publishBytesPerSecond)
        return publishAllowances.withLock { allowances in
            var (eventBucket, byteBucket) = allowances[userID] ?? (.init(tokens: eventRate * 10, updatedMs: now), .init(tokens: byteRate * 10, updatedMs: now))
            eventBucket = LoginLimits.refilled(eventBucket, burst: eventRate * 10, refillMs: 1000 / eventRate, nowMs: now)
            byteBucket = LoginLimits.refilled(byteBucket, burst: byteRate * 10, refillMs: 1000 / byteRate, nowMs: now)
            guard eventBucket.tokens >= Double(events), byteBucket.tokens >= Double(bytes) else {
                allowances[userID] = (eventBucket, byteBucket)
                return false
            }
            eventBucket.tokens -= Double(events)
            byteBucket.tokens -= Double(bytes)
            if allowances.count >= LoginLimits.maxEntries { allowances.removeAll(keepingCapacity: true) }
            allowances[userID] = (eventBucket, byteBucket)
            return true
        }
    }
}
