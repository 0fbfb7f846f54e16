import Crypto
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleySync
import Synchronization

/// How a node syncs with its peers.
public struct PeerSettings: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Range-based set reconciliation (docs/PROTOCOL.md §17.3).
        case reconcile
        /// Bloom filters of everything held, every interval (§17.4; seed 002's exchange, kept for comparison).
        case bloom
    }

    public var mode: Mode = .reconcile
    /// Between a room's syncs with each peer (ms). New events go out at once; the syncs repair what was lost.
    public var intervalMs: Int64 = 2_000
    /// How long a peer that last sent something is still pushed new events, when it is not configured (ms).
    public var heardForMs: Int64 = 120_000
    /// Datagrams per second to one address, after a burst of ``burst``: pacing, so a catch-up does not drown a link.
    public var datagramsPerSecond = 12_000
    public var burst = 256
    /// Datagrams from one host that this node checks per second (after a burst of a quarter of that); past it they are
    /// dropped as `rate_limited` before the membership lookup and the signature check.
    public var verificationsPerSecond = 16_000
    public var gate = PeerGate.Settings()
    public var reassembly = EventReassembler.Limits()

    public init() {}
}

/// What a peer transport did, for logs and metrics.
public struct PeerCounters: Sendable, Equatable {
    public var datagramsIn = 0
    public var datagramsOut = 0
    public var bytesIn = 0
    public var bytesOut = 0
    /// Datagrams dropped, by reason (``PeerDatagramError/Code`` raw values, and `amplification` for replies held back).
    public var dropped: [String: Int] = [:]
    public var eventsSent = 0
    public var eventsReceived = 0
    public var eventsAccepted = 0
    /// Reconciliation and Bloom bytes (datagram bodies and headers), apart from the events they move.
    public var syncBytesOut = 0
    /// Pieces of blocks sent to peers that asked, and received for this node's fetches (docs/PROTOCOL.md §17.6).
    public var piecesSent = 0
    public var piecesReceived = 0
    /// Blocks fetched whole from peers and checked.
    public var blocksFetched = 0
    /// Event batches waiting for fragments now.
    public var pendingBatches = 0

    public init() {}
}

/// The peer transport's driver (docs/PROTOCOL.md §17): one UDP socket carrying every peer room of the node. It reads
/// datagrams and checks them in the order §17.2 gives (form, time, membership, signature, replay) before any other
/// work; answers reconciliation messages and Bloom digests with the events the peer lacks; puts event batches back
/// together and hands them to the node's ingest; pushes this device's new events (and those that just arrived) to the
/// room's peers; and every ``PeerSettings/intervalMs`` starts a sync with each configured peer.
///
/// The decisions that need no socket live in values: ``Reconciler``, ``BloomDigest``, ``PeerGate``,
/// ``EventBatches``/``EventReassembler``, ``Pacer``.
public final class PeerTransport: Sendable {
    public let host: any TransportHost
    public let settings: PeerSettings
    let logger: Logger
    let state: Mutex<State>
    private let refreshing = Mutex(())
    /// The socket's outbound half while ``run(listen:peers:wake:bound:)`` or ``withSocket(listen:_:)`` runs.
    let activeLink = Mutex<Link?>(nil)

    struct State {
        var gate: PeerGate
        var reassembler: EventReassembler
        var rooms: [String: RoomCache] = [:]
        /// Per room, the devices heard from lately: where, and when.
        var heard: [String: [[UInt8]: (address: String, ms: Int64)]] = [:]
        /// The device last heard from at each address.
        var addressKeys: [String: [UInt8]] = [:]
        /// Hashes of events that came from peers and were stored, not yet seen by a push: a push sends this node's
        /// new events, not those every peer was sent already.
        var arrived: Set<EventHash256> = []
        /// Each room's datagram key (§17.1) when it is a pre-shared-key room, nil otherwise; looked up once.
        var datagramKeys: [String: SymmetricKey?] = [:]
        /// Addresses this node chose to reach (its configured peers, the peer it joins through): what it sends them is
        /// its own initiative, never an amplified answer, so the gate's limit does not apply.
        var chosen: Set<String> = []
        /// Per room, events stored since the last push (whoever brought the room's cache up to date).
        var unpushed: [String: [ReconciliationItem]] = [:]
        /// The last nonce received from each address: echoed in what goes back there.
        var lastNonce: [String: [UInt8]] = [:]
        var pacers: [String: Pacer] = [:]
        var counters = PeerCounters()
        /// Membership answers, by room then key, with when they stop being trusted; a room's are dropped whenever it
        /// gains an event (a removal takes effect at once).
        var owners: [String: [[UInt8]: Int64]] = [:]
        /// Per host, the checks it may still cost this node: datagrams past ``PeerSettings/verificationsPerSecond``
        /// are dropped before the membership lookup and the signature check.
        var verifications: [String: Pacer] = [:]
        /// Datagrams held back from addresses that have not shown they receive there, sent once they do.
        var heldBack: [String: [[UInt8]]] = [:]
        /// When a probe last asked each address to show it receives there.
        var probedMs: [String: Int64] = [:]
        /// Rooms this node is fetching from a peer to join them, by room id.
        var joining: [String: Joining] = [:]
        /// Blocks being fetched from peers, by id.
        var fetches: [BlockID: BlockFetch] = [:]
        /// Per room, the blocks it gives peers that ask, the room's last row when that was read, and when.
        var roomBlocks: [String: (ids: Set<BlockID>, row: Int64, at: ContinuousClock.Instant)] = [:]
        /// Blocks read lately to answer wants, oldest first.
        var servedBlocks: [(id: BlockID, bytes: [UInt8])] = []
    }

    /// A room fetched from a peer before this node holds it: its events are kept until the create its invite code
    /// pins arrives, then stored.
    struct Joining {
        var peer: String
        var creatorFingerprint: String
        /// The datagram key, in a pre-shared-key room (from the invite's secret).
        var datagramKey: SymmetricKey?
        var verified: [Result<VerifiedEvent, EventError>] = []
        var lines: [[UInt8]] = []
        var bytes = 0
        var isPinned = false
    }

    /// The most bytes of events kept for a room being joined before its create arrives.
    static let maxJoiningBytes = 256 << 20

    /// The most datagrams held back for one address, and the most addresses holding some.
    static let maxHeldBack = 512
    static let maxHeldBackAddresses = 64
    /// The most addresses whose last nonce, probe time and pacer are remembered; past it, they start afresh.
    static let maxAddresses = 4_096
    /// The shortest pacing wait slept (µs); and the instant pacers count from.
    static let minimumPaceWait: Int64 = 2_000
    static let paceEpoch = ContinuousClock.now

    /// Microseconds on a monotonic clock, for pacing and rate limits: never the node's clock, which tests may stop.
    static func monotonicMicroseconds() -> Int64 {
        let elapsed = ContinuousClock.now - paceEpoch
        return elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
    }

    struct RoomCache {
        var set: ReconciliationSet
        var lastRow: Int64
    }

    public init(host: any TransportHost, settings: PeerSettings = PeerSettings(), logger: Logger) {
        self.host = host
        self.settings = settings
        self.logger = logger
        state = Mutex(State(gate: PeerGate(settings: settings.gate), reassembler: EventReassembler(limits: settings.reassembly)))
    }

    public var counters: PeerCounters { state.withLock { $0.counters } }

    /// Listens on `address` (HOST:PORT) and syncs until cancelled.
    /// - Parameters:
    ///   - peers: the configured peers of each room, asked again before each round of syncs.
    ///   - discovered: peers found on the LAN (``PeerDiscovery``), synced like configured ones, but sent no more than
    ///     the amplification limit allows until they show they receive there.
    ///   - wake: room ids whose store changed (this device's new events): their new events go to the room's peers.
    ///   - bound: told the address the socket took (port 0 takes a free one).
    public func run(
        listen address: String, peers: @escaping @Sendable () -> [String: [String]], discovered: @escaping @Sendable () -> [String: [String]] = { [:] },
        wake: AsyncStream<String>, bound: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        let channel = try await Self.bind(address)
        logger.info("Peers listening", metadata: ["address": "\(channel.channel.localAddress.map(PeerAddress.text) ?? address)"])
        try await channel.executeThenClose { inbound, outbound in
            let link = Link(outbound: outbound)
            activeLink.withLock { $0 = link }
            defer { activeLink.withLock { $0 = nil } }
            // Told once the socket can send: a caller may fetch blocks through it as soon as it hears.
            if let local = channel.channel.localAddress { bound(PeerAddress.text(local)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await envelope in inbound { await self.handle(envelope, link: link) }
                }
                group.addTask {
                    // Discovered peers are pushed to once they speak: as any device heard from lately.
                    for await roomID in wake { await self.pushNew(roomID, peers: peers()[roomID] ?? [], link: link) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        let configured = peers()
                        self.state.withLock { $0.chosen = Set(configured.values.joined()) }
                        var all = configured
                        for (roomID, found) in discovered() {
                            all[roomID, default: []] += found.filter { !(configured[roomID] ?? []).contains($0) }
                        }
                        // Spread over the interval, in a random order: after a partition heals, the first syncs carry
                        // what was missed and the later ones find less left, instead of every peer sending it at once.
                        let syncs = all.flatMap { roomID, addresses in addresses.map { (roomID, $0) } }.shuffled()
                        let gapMs = self.settings.intervalMs / Int64(max(1, syncs.count))
                        for (roomID, address) in syncs {
                            await self.startSync(roomID, with: address, link: link)
                            try await Task.sleep(for: .milliseconds(gapMs))
                        }
                        if syncs.isEmpty { try await Task.sleep(for: .milliseconds(self.settings.intervalMs)) }
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }

    /// A UDP socket at `address` (HOST:PORT), with a receive buffer that holds a burst of pieces or events.
    static func bind(_ address: String) async throws -> NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>> {
        let (hostName, port) = try PeerAddress.split(address)
        return try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: 4 << 20)
            .bind(host: hostName, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// The outbound half of the socket, and resolved addresses.
    final class Link: Sendable {
        let outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>
        private let resolved = Mutex<[String: SocketAddress]>([:])

        init(outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>) {
            self.outbound = outbound
        }

        func address(_ text: String) throws -> SocketAddress {
            if let known = resolved.withLock({ $0[text] }) { return known }
            let (host, port) = try PeerAddress.split(text)
            let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
            resolved.withLock { $0[text] = address }
            return address
        }
    }

    /// The key sealing the room's datagram bodies: a pre-shared-key room's (§17.1), or nil.
    func datagramKey(_ roomID: String) throws -> SymmetricKey? {
        if let joining = state.withLock({ $0.joining[roomID] }) { return joining.datagramKey }
        if let known = state.withLock({ $0.datagramKeys[roomID] }) { return known }
        let key = try host.preSharedRoomKey(roomID: roomID).map { PeerDatagram.datagramKey(roomKey: SymmetricKey(data: $0), roomID: roomID) }
        state.withLock { $0.datagramKeys[roomID] = .some(key) }
        return key
    }

    /// The body bytes a datagram of the room has room for.
    func bodyBudget(_ roomID: String) -> Int {
        PeerDatagram.bodyBudget(roomID: roomID, sealed: (try? datagramKey(roomID)) != nil)
    }

    // MARK: Receiving

    func handle(_ envelope: AddressedEnvelope<ByteBuffer>, link: Link) async {
        let bytes = Array(envelope.data.readableBytesView)
        let address = PeerAddress.text(envelope.remoteAddress)
        let nowMs = host.now()
        state.withLock {
            $0.counters.datagramsIn += 1
            $0.counters.bytesIn += bytes.count
        }
        do {
            let datagram = try PeerDatagram(parsing: bytes)
            guard state.withLock({ $0.gate.isFresh(sentMs: datagram.sentMs, nowMs: nowMs) }) else {
                throw PeerDatagramError(.stale, "sent at \(datagram.sentMs), too far from this node's clock")
            }
            let isJoinPeer = state.withLock { $0.joining[datagram.roomID]?.peer == address }
            // Per host, before the membership lookup and the signature: what a flood may cost is bounded whichever
            // keys it claims and whichever ports it comes from.
            let host = address.lastIndex(of: ":").map { String(address[..<$0]) } ?? address
            let withinRate = state.withLock { state in
                var budget =
                    state.verifications[host] ?? Pacer(perSecond: settings.verificationsPerSecond, burst: max(1, settings.verificationsPerSecond / 4))
                let isFree = budget.takeIfFree(nowMicroseconds: Self.monotonicMicroseconds())
                if state.verifications.count > Self.maxAddresses { state.verifications = [:] }
                state.verifications[host] = budget
                return isFree
            }
            guard withinRate else { throw PeerDatagramError(.rateLimited, "more datagrams from its host than this node checks in a second") }
            guard try isJoinPeer || isMember(datagram.senderKey, of: datagram.roomID, nowMs: nowMs) else {
                throw PeerDatagramError(.notMember, "its key is no member device of room \(datagram.roomID)")
            }
            // A replay is refused before the signature is checked (the nonce is recorded only once it verified).
            guard !state.withLock({ $0.gate.hasSeen(datagram) }) else { throw PeerDatagramError(.replayed, "its nonce was seen before from this device") }
            try datagram.verify()
            let released = try state.withLock { state throws(PeerDatagramError) -> [[UInt8]] in
                let wasValidated = state.gate.isValidated(address)
                try state.gate.admit(datagram, bytes: bytes.count, from: address, nowMs: nowMs)
                state.heard[datagram.roomID, default: [:]][datagram.senderKey] = (address, nowMs)
                if state.addressKeys.count > 10_000 { state.addressKeys = [:] }
                state.addressKeys[address] = datagram.senderKey
                // Per-address memories stay bounded whatever addresses datagrams claim to come from.
                if state.lastNonce.count > Self.maxAddresses { state.lastNonce = [:] }
                state.lastNonce[address] = datagram.nonce
                return !wasValidated && state.gate.isValidated(address) ? state.heldBack.removeValue(forKey: address) ?? [] : []
            }
            for held in released { await write(held, to: address, link: link, isSync: false) }
            let body = try datagram.openBody(with: try datagramKey(datagram.roomID))
            try await dispatch(datagram, body: body, from: address, link: link)
        } catch let error as PeerDatagramError {
            drop(error.code.rawValue, error.description, from: address)
        } catch let error as ReconciliationError {
            drop("malformed", error.description, from: address)
        } catch {
            logger.warning("Peer datagram failed", metadata: ["from": "\(address)", "error": "\(error)"])
        }
    }

    private func drop(_ code: String, _ message: String, from address: String) {
        state.withLock { $0.counters.dropped[code, default: 0] += 1 }
        logger.debug("Peer datagram dropped", metadata: ["from": "\(address)", "reason": "\(message)"])
    }

    private func isMember(_ key: [UInt8], of roomID: String, nowMs: Int64) throws -> Bool {
        if let until = state.withLock({ $0.owners[roomID]?[key] }), until > nowMs { return true }
        guard try host.isMemberDevice(roomID: roomID, signingKey: Base64.encode(key)) else { return false }
        state.withLock {
            if $0.owners[roomID, default: [:]].count > 10_000 { $0.owners[roomID] = [:] }
            $0.owners[roomID, default: [:]][key] = nowMs + 10_000
        }
        return true
    }

    private func dispatch(_ datagram: PeerDatagram, body: [UInt8], from address: String, link: Link) async throws {
        let roomID = datagram.roomID
        switch datagram.kind {
        case .reconcile:
            let message = try ReconciliationMessage(decoding: body)
            let reply = try reconciler(roomID).reply(to: message)
            for part in reply.message?.parts(maxBytes: bodyBudget(roomID)) ?? [] {
                await send(.reconcile, roomID: roomID, body: part.encoded, to: address, link: link, isSync: true)
            }
            await sendEvents(reply.send, roomID: roomID, to: address, link: link)
        case .bloom:
            let digest = try BloomDigest(decoding: body)
            let missing = try refreshed(roomID).items.filter { digest.covers($0.hash) && !digest.contains($0.hash) }
            await sendEvents(missing, roomID: roomID, to: address, link: link)
        case .events:
            let batch = try state.withLock { state throws(PeerDatagramError) -> [UInt8]? in
                defer { state.counters.pendingBatches = state.reassembler.pendingCount }
                do { return try state.reassembler.add(body, from: datagram.senderKey, nowMs: host.now()) } catch {
                    throw PeerDatagramError(.malformed, "an event fragment with a bad header")
                }
            }
            guard let batch else { return }
            try await ingest(batch, roomID: roomID, from: address, link: link)
        case .probe:
            guard body == [0] || body == [1] else { throw PeerDatagramError(.malformed, "a probe's body is not one byte 0 or 1") }
            // A probe asking for an answer (body 1) gets one, whose echo shows the asker this node receives here.
            if body == [1] { await send(.probe, roomID: roomID, body: [0], to: address, link: link, isSync: true) }
        case .blockWant:
            try await answer(BlockWant(decoding: body), roomID: roomID, to: address, link: link)
        case .blockPiece:
            take(try BlockPiece(decoding: body), from: address)
        case .blockAbsent:
            takeAbsence(of: try BlockPiece.decodeAbsent(body).id, from: address)
        }
    }

    /// Verifies and stores a batch's events (only the room's own), then passes what was new to the room's other peers.
    private func ingest(_ batch: [UInt8], roomID: String, from address: String, link: Link) async throws {
        var lines = batch.split(separator: UInt8(ascii: "\n")).map(Array.init)
        guard !lines.isEmpty else { return }
        var verified = VerifiedEvent.verifyInParallel(lines).map { result -> Result<VerifiedEvent, EventError> in
            guard case .success(let event) = result, event.event.roomID != roomID else { return result }
            return .failure(EventError(.invalidValue, "an event of room \(event.event.roomID) came in a datagram of room \(roomID)"))
        }
        if state.withLock({ $0.joining[roomID].map { !$0.isPinned } ?? false }) {
            guard let pinned = try pinJoining(roomID, verified: verified, lines: lines) else { return }
            (verified, lines) = pinned
        }
        let report = try host.ingest(roomID: roomID, verified: verified, lines: lines, receivedMs: host.now())
        // Events released from waiting (their predecessor came in this batch) count as accepted now.
        let accepted = report.outcomes.filter { $0 == .accepted }.count + report.released.filter { $0.outcome == .accepted }.count
        let problems = report.outcomes.filter {
            if case .rejected = $0 { return true }
            return false
        }.count
        state.withLock {
            $0.counters.eventsReceived += lines.count
            $0.counters.eventsAccepted += accepted
            // The room changed (a removal among the events, perhaps): its membership answers are asked again.
            if accepted > 0 { $0.owners.removeValue(forKey: roomID) }
        }
        if accepted > 0 || problems > 0 { host.synced(roomID: roomID, accepted: accepted, problems: problems) }
        // Whatever came from a peer, stored now or once its predecessor comes, is not this node's to push.
        let came = verified.compactMap { try? $0.get() }.compactMap { EventHash256(hex: $0.hash) }
        state.withLock { state in
            if state.arrived.count > 100_000 { state.arrived = [] }
            state.arrived.formUnion(came)
        }
    }

    /// Keeps a room's events until the create its invite code pins is among them; then pins it (with its creator's
    /// join) and returns everything kept, to be stored. - Returns: `nil` while the create has not come.
    private func pinJoining(
        _ roomID: String, verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]]
    ) throws -> (verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]])? {
        let kept = state.withLock { state -> Joining? in
            guard var joining = state.joining[roomID] else { return nil }
            let added = lines.reduce(0) { $0 + $1.count }
            if joining.bytes + added <= Self.maxJoiningBytes {
                joining.verified += verified
                joining.lines += lines
                joining.bytes += added
            }
            state.joining[roomID] = joining
            return joining
        }
        guard let kept else { return nil }
        let events = kept.verified.compactMap { try? $0.get() }
        guard
            let create = events.first(where: {
                $0.event.type == EventType.create && InviteCode.fingerprint(ofKey: $0.event.senderKey) == kept.creatorFingerprint
            })
        else { return nil }
        var founding = [create]
        if let join = events.first(where: { $0.event.senderKey == create.event.senderKey && $0.event.seq == 2 && $0.event.type == EventType.member }) {
            founding.append(join)
        }
        _ = try host.pin(roomID: roomID, founding: founding)
        state.withLock {
            $0.joining[roomID]?.isPinned = true
            $0.joining[roomID]?.verified = []
            $0.joining[roomID]?.lines = []
        }
        return (kept.verified, kept.lines)
    }

    /// Fetches a room this node does not hold from the peer at `peer`, which must take this device for one its state
    /// invites: listens on `listen`, asks for everything the peer holds until `isReady` says enough came (the room's
    /// create pins `creatorFingerprint`; events of another creator's room are never stored), then runs `then` (which
    /// signs this device's join) and sends the peer what this node holds that it lacks.
    /// - Throws: ``TransportError`` `peer_unreachable` when nothing usable came within `timeoutMs`.
    public func join(
        roomID: String, creatorFingerprint: String, preSharedRoomKey: [UInt8]? = nil, peer: String, listen: String, timeoutMs: Int64 = 15_000,
        isReady: @escaping @Sendable () throws -> Bool, then: @escaping @Sendable () async throws -> Void
    ) async throws {
        state.withLock {
            $0.joining[roomID] = Joining(
                peer: peer, creatorFingerprint: creatorFingerprint,
                datagramKey: preSharedRoomKey.map { PeerDatagram.datagramKey(roomKey: SymmetricKey(data: $0), roomID: roomID) })
            $0.chosen.insert(peer)
        }
        defer { _ = state.withLock { $0.joining.removeValue(forKey: roomID) } }
        try await withSocket(listen: listen) { link in
            let deadline = self.host.now() + timeoutMs
            var random = SystemRandomNumberGenerator()
            // Asking as a side that holds nothing: the peer sends all it has.
            while try !isReady() {
                guard self.host.now() < deadline else {
                    throw TransportError(
                        code: "peer_unreachable", "Nothing of room \(roomID) came from the peer at \(peer) within \(timeoutMs / 1000) s.",
                        remedy:
                            "Check that its node runs with --listen-udp at that address and that this machine reaches it (no NAT traversal: use a relay or a bucket across the internet), and that its room invites this device."
                    )
                }
                if try self.host.holdsCreate(roomID: roomID) {
                    // Pinned: what is still missing (the invite, if it came late) is found as any sync finds it.
                    await self.startSync(roomID, with: peer, link: link)
                } else {
                    let start = Reconciler(ReconciliationSet([])).start(salt: random.next()).encoded
                    await self.send(.reconcile, roomID: roomID, body: start, to: peer, link: link, isSync: true)
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            try await then()
            // What the peer lacks (this device's join): two sessions, a little apart, so one lost datagram does not lose it.
            _ = try? self.refreshed(roomID)
            for _ in 0..<2 {
                await self.startSync(roomID, with: peer, link: link)
                try await Task.sleep(for: .milliseconds(300))
            }
        }
    }

    /// Binds a socket at `listen` for the length of `body`, reading what arrives there as ``run(listen:peers:wake:bound:)``
    /// does: for the work of a process that runs no peer transport (a download, ``fetchBlock(_:roomID:peers:)``).
    public func withSocket<T: Sendable>(listen: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withSocket(listen: listen) { _ in try await body() }
    }

    func withSocket<T: Sendable>(listen: String, _ body: @escaping @Sendable (Link) async throws -> T) async throws -> T {
        let channel = try await Self.bind(listen)
        return try await channel.executeThenClose { inbound, outbound in
            let link = Link(outbound: outbound)
            activeLink.withLock { $0 = link }
            defer { activeLink.withLock { $0 = nil } }
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    for try await envelope in inbound { await self.handle(envelope, link: link) }
                    return nil
                }
                group.addTask { try await body(link) }
                defer { group.cancelAll() }
                // The inbound loop runs until cancelled: the body's end (or failure) ends the socket.
                while let result = try await group.next() {
                    if let result { return result }
                }
                throw CancellationError()
            }
        }
    }

    // MARK: Sending

    /// The room's reconciler over what the store holds now: the cache takes the rows stored since it was last read,
    /// and events held back for a predecessor count as held (a peer then sends only what they wait for).
    func reconciler(_ roomID: String) throws -> Reconciler {
        let set = try refreshed(roomID)
        let waiting = try host.heldBackItems(roomID: roomID)
        return Reconciler(waiting.isEmpty ? set : set.adding(waiting))
    }

    /// Brings the room's cache up to date; the rows new to it wait for the next push. One refresh at a time, so that
    /// each row is taken once.
    @discardableResult
    func refreshed(_ roomID: String) throws -> ReconciliationSet {
        try refreshing.withLock { _ in
            let cached = state.withLock { $0.rooms[roomID] }
            let (items, lastRow) = try host.reconciliationItems(roomID: roomID, afterRow: cached?.lastRow ?? 0)
            let set = cached.map { $0.set.adding(items) } ?? ReconciliationSet(items)
            state.withLock { state in
                state.rooms[roomID] = RoomCache(set: set, lastRow: lastRow)
                if cached != nil, !items.isEmpty { state.unpushed[roomID, default: []] += items }
            }
            return set
        }
    }

    /// Sends the room's events stored since its cache was last brought up to date, but for those that came from
    /// peers, to its configured peers and to the devices heard from lately at no configured address.
    func pushNew(_ roomID: String, peers configured: [String], link: Link) async {
        // The room changed: its membership answers are asked again.
        _ = state.withLock { $0.owners.removeValue(forKey: roomID) }
        guard (try? refreshed(roomID)) != nil else { return }
        let nowMs = host.now()
        let (new, targets) = state.withLock { state -> ([ReconciliationItem], [String]) in
            state.chosen.formUnion(configured)
            let new = (state.unpushed.removeValue(forKey: roomID) ?? []).filter { state.arrived.remove($0.hash) == nil }
            let reached = Set(configured.compactMap { state.addressKeys[$0] })
            var targets = configured
            for (key, heard) in state.heard[roomID] ?? [:] where nowMs - heard.ms <= settings.heardForMs && !reached.contains(key) {
                if !targets.contains(heard.address) { targets.append(heard.address) }
            }
            return (new, targets)
        }
        guard !new.isEmpty else { return }
        for address in targets { await sendEvents(new, roomID: roomID, to: address, link: link) }
    }

    /// Starts a sync of the room with the peer at `address`: a reconciliation session, or this side's Bloom digests.
    func startSync(_ roomID: String, with address: String, link: Link) async {
        do {
            let reconciler = try reconciler(roomID)
            let budget = bodyBudget(roomID)
            var random = SystemRandomNumberGenerator()
            switch settings.mode {
            case .reconcile:
                for part in reconciler.start(salt: random.next()).parts(maxBytes: budget) {
                    await send(.reconcile, roomID: roomID, body: part.encoded, to: address, link: link, isSync: true)
                }
            case .bloom:
                for digest in BloomDigest.digests(of: reconciler.set.items.map(\.hash), salt: random.next(), maxBytes: budget) {
                    await send(.bloom, roomID: roomID, body: digest.encoded, to: address, link: link, isSync: true)
                }
            }
        } catch {
            logger.warning("Peer sync not started", metadata: ["room.id": "\(roomID)", "peer": "\(address)", "error": "\(error)"])
        }
    }

    func sendEvents(_ items: [ReconciliationItem], roomID: String, to address: String, link: Link) async {
        guard !items.isEmpty else { return }
        do {
            var random = SystemRandomNumberGenerator()
            // A few hundred at a time: the wires of a whole room are not held at once.
            for start in stride(from: 0, to: items.count, by: 256) {
                let wires = try host.eventWires(roomID: roomID, items: Array(items[start..<min(items.count, start + 256)]))
                let bodies = EventBatches.bodies(for: wires, budget: bodyBudget(roomID)) { random.next() }
                for body in bodies { await send(.events, roomID: roomID, body: body, to: address, link: link, isSync: false) }
                state.withLock { $0.counters.eventsSent += wires.count }
            }
        } catch {
            logger.warning("Peer events not sent", metadata: ["room.id": "\(roomID)", "peer": "\(address)", "error": "\(error)"])
        }
    }

    /// Signs and sends one datagram, paced; to an address that has not shown it receives there, only within what the
    /// gate allows, the rest held back (and a probe sent to ask it to show it) until it does.
    func send(_ kind: PeerDatagram.Kind, roomID: String, body: [UInt8], to address: String, link: Link, isSync: Bool) async {
        let datagram: PeerDatagram
        var random = SystemRandomNumberGenerator()
        let nonce = (0..<PeerDatagram.nonceBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
        do {
            let echo = state.withLock { $0.lastNonce[address] }
            datagram = try PeerDatagram(
                kind: kind, roomID: roomID, senderKey: Base64.decode(host.deviceKey) ?? [], sentMs: UInt64(max(0, host.now())), nonce: nonce, echo: echo,
                body: body, sealingWith: try datagramKey(roomID), sign: host.sign)
        } catch {
            logger.warning("Peer datagram not signed", metadata: ["peer": "\(address)", "error": "\(error)"])
            return
        }
        let bytes = datagram.encoded
        let nowMs = host.now()
        let (allowed, probe) = state.withLock { state -> (Bool, Bool) in
            // Probes are one byte of body, at most one a second asking per address, answered one for one.
            let regardless = kind == .probe || state.chosen.contains(address)
            if state.gate.spend(bytes.count, to: address, nonce: nonce, regardless: regardless) { return (true, false) }
            if state.heldBack[address] != nil || state.heldBack.count < Self.maxHeldBackAddresses {
                state.heldBack[address, default: []].append(bytes)
                if state.heldBack[address]!.count > Self.maxHeldBack { state.heldBack[address]!.removeFirst() }
            }
            state.counters.dropped["held_back", default: 0] += 1
            let isDue = nowMs - (state.probedMs[address] ?? .min / 2) >= 1_000
            if isDue {
                if state.probedMs.count > Self.maxAddresses { state.probedMs = [:] }
                state.probedMs[address] = nowMs
            }
            return (false, isDue && kind != .probe)
        }
        if allowed { await write(bytes, to: address, link: link, isSync: isSync) }
        if probe { await send(.probe, roomID: roomID, body: [1], to: address, link: link, isSync: true) }
    }

    /// Writes a signed datagram, after the wait its address's pacer gives: waits shorter than ``minimumPaceWait`` are
    /// let run up (a sleep costs about as much), so the rate holds on average without a sleep per datagram.
    private func write(_ bytes: [UInt8], to address: String, link: Link, isSync: Bool) async {
        do {
            let waitMicroseconds = state.withLock { state in
                var pacer = state.pacers[address] ?? Pacer(perSecond: settings.datagramsPerSecond, burst: settings.burst)
                let wait = pacer.take(nowMicroseconds: Self.monotonicMicroseconds())
                if state.pacers.count > Self.maxAddresses { state.pacers = [:] }
                state.pacers[address] = pacer
                return wait
            }
            if waitMicroseconds >= Self.minimumPaceWait { try await Task.sleep(for: .microseconds(waitMicroseconds)) }
            try await link.outbound.write(AddressedEnvelope(remoteAddress: link.address(address), data: ByteBuffer(bytes: bytes)))
            state.withLock {
                $0.counters.datagramsOut += 1
                $0.counters.bytesOut += bytes.count
                if isSync { $0.counters.syncBytesOut += bytes.count }
            }
        } catch {
            logger.debug("Peer datagram not sent", metadata: ["peer": "\(address)", "error": "\(error)"])
        }
    }
}

/// Datagrams per second to one address, after a burst: how long the next one waits.
public struct Pacer: Sendable {
    public let perSecond: Int
    public let burst: Int
    private var tokens: Double
    private var lastMicroseconds: Int64?

    public init(perSecond: Int, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
        tokens = Double(burst)
    }

    /// Takes one datagram's turn at `nowMicroseconds` (a monotonic clock's). - Returns: how long to wait before sending
    /// it (µs).
    public mutating func take(nowMicroseconds: Int64) -> Int64 {
        refill(nowMicroseconds)
        tokens -= 1
        return tokens >= 0 ? 0 : Int64((-tokens * 1_000_000 / Double(perSecond)).rounded(.up))
    }

    /// Takes a turn at `nowMicroseconds` only when one is free: a rate limit, where what is refused costs nothing later.
    public mutating func takeIfFree(nowMicroseconds: Int64) -> Bool {
        refill(nowMicroseconds)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    private mutating func refill(_ nowMicroseconds: Int64) {
        if let lastMicroseconds {
            tokens = min(Double(burst), tokens + Double(nowMicroseconds - lastMicroseconds) * Double(perSecond) / 1_000_000)
        }
        lastMicroseconds = nowMicroseconds
    }
}

/// HOST:PORT as peers and settings write it.
public enum PeerAddress {
    /// Splits HOST:PORT (an IPv6 host in brackets).
    /// - Throws: ``TransportError`` `invalid_argument` when it is not of that form.
    public static func split(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw TransportError(code: TransportError.invalidArgument, "\"\(text.prefix(100))\" is not HOST:PORT.", remedy: "Write it as 192.168.1.20:7070.")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw TransportError(code: TransportError.invalidArgument, "\"\(text.prefix(100))\" names no host.") }
        return (host, port)
    }

    /// A socket address as HOST:PORT.
    public static func text(_ address: SocketAddress) -> String {
        let ip = address.ipAddress ?? "?"
        let port = address.port ?? 0
        return address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
