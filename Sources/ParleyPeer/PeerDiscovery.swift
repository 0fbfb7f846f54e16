import Crypto
import Logging
import NIOCore
import NIOPosix
import ParleyCore
import ParleySync
import Synchronization

/// LAN discovery (docs/PROTOCOL.md §17.9), opt-in: joins a multicast group on the local link, announces there the
/// port the peer transport listens on with a tag per room (``PeerAnnouncement``: no room in clear), and remembers
/// who announced a room this node holds, at the address the announcement came from and the port it names. The peer
/// transport syncs with those as with configured peers, except that what it sends them stays within the
/// amplification limit until they show they receive there (§17.2): an announcement is not signed.
public final class PeerDiscovery: Sendable {
    public struct Settings: Sendable {
        /// The group and port, HOST:PORT (an IPv4 multicast address, 224.0.0.0/4).
        public var group: String
        /// Between announcements; a node that hears a new announcer of its rooms also answers at once (at most once a second).
        public var intervalMs: Int64 = 30_000
        /// How long an announcer is kept after its last announcement.
        public var forgetAfterMs: Int64 = 95_000
        /// The most announcers kept per room; past it the one heard from longest ago goes.
        public var maxPerRoom = 16

        public init(group: String) {
            self.group = group
        }
    }

    public let host: any TransportHost
    public let settings: Settings
    let logger: Logger
    private let state = Mutex(State())

    private struct State {
        /// Per room, announcers' addresses (HOST:PORT) and when each was last heard.
        var found: [String: [String: ContinuousClock.Instant]] = [:]
        /// Each room's announcement key, by room id, and when the list was made.
        var keys: [String: SymmetricKey] = [:]
        var keysAt: ContinuousClock.Instant?
        /// The rooms the keys were made for.
        var keyedRooms: Set<String> = []
        /// Nonces of this node's own recent announcements: the group loops them back.
        var ownNonces: [[UInt8]] = []
        var lastAnswer: ContinuousClock.Instant?
        /// Announcements taken per second, whoever sends them: each costs a lookup of the rooms and a MAC per room.
        var intake = Pacer(perSecond: PeerDiscovery.announcementsPerSecond, burst: PeerDiscovery.announcementsPerSecond)
    }

    public init(host: any TransportHost, settings: Settings, logger: Logger) {
        self.host = host
        self.settings = settings
        self.logger = logger
    }

    /// The announcers of each room heard from within ``Settings/forgetAfterMs``, by room id.
    public func discovered() -> [String: [String]] {
        let now = ContinuousClock.now
        return state.withLock { state in
            state.found.compactMapValues { addresses in
                let fresh = addresses.filter { now - $0.value < .milliseconds(settings.forgetAfterMs) }.keys.sorted()
                return fresh.isEmpty ? nil : fresh
            }
        }
    }

    /// The most announcements taken in a second; the rest are dropped unread.
    static let announcementsPerSecond = 200

    /// Joins the group and announces `listenPort` for the rooms `rooms` gives, every interval, until cancelled.
    /// - Throws: when the group cannot be joined (no multicast route, a port taken without address reuse).
    public func run(listenPort: Int, rooms: @escaping @Sendable () -> [String]) async throws {
        let (groupHost, groupPort) = try PeerAddress.split(settings.group)
        let group = try SocketAddress(ipAddress: groupHost, port: groupPort)
        guard case .v4(let v4) = group, (0xE0...0xEF).contains(UInt32(bigEndian: v4.address.sin_addr.s_addr) >> 24) else {
            throw TransportError(
                code: TransportError.invalidArgument, "\(settings.group) is not an IPv4 multicast address and port.",
                remedy: "Give a group in 224.0.0.0/4, as 239.255.77.77:7799.")
        }
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // One hop: nothing leaves the local link.
            .channelOption(ChannelOptions.Types.SocketOption(level: .ip, name: .ip_multicast_ttl), value: 1)
            // Bound to the group's address, the socket takes only what is sent to the group, not unicast to the port.
            .bind(host: groupHost, port: groupPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
        // Once bound: a group is joined by a socket that has an address.
        do {
            try await (channel.channel as! MulticastChannel).joinGroup(group).get()
        } catch {
            try? await channel.channel.close()
            throw error
        }
        logger.info("Peer discovery on", metadata: ["group": "\(settings.group)"])
        try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    for try await envelope in inbound {
                        guard let ip = envelope.remoteAddress.ipAddress else { continue }
                        let host = envelope.remoteAddress.protocol == .inet6 ? "[\(ip)]" : ip
                        if self.take(Array(envelope.data.readableBytesView), from: host, rooms: rooms) {
                            await self.announce(port: listenPort, rooms: rooms, to: group, outbound: outbound)
                        }
                    }
                }
                tasks.addTask {
                    while !Task.isCancelled {
                        await self.announce(port: listenPort, rooms: rooms, to: group, outbound: outbound)
                        try await Task.sleep(for: .milliseconds(self.settings.intervalMs))
                    }
                }
                defer { tasks.cancelAll() }
                try await tasks.next()
            }
        }
    }

    /// The rooms' announcement keys, made again once an interval or when the rooms changed.
    private func roomKeys(_ rooms: [String]) -> [String: SymmetricKey] {
        let now = ContinuousClock.now
        if let cached = state.withLock({ state in
            state.keysAt.map { now - $0 < .milliseconds(settings.intervalMs) } == true && state.keyedRooms == Set(rooms) ? state.keys : nil
        }) {
            return cached
        }
        var keys: [String: SymmetricKey] = [:]
        for roomID in rooms {
            guard let hash = try? host.createEventHash(roomID: roomID) else { continue }
            keys[roomID] = PeerAnnouncement.roomKey(createHash: hash, preSharedRoomKey: try? host.preSharedRoomKey(roomID: roomID), roomID: roomID)
        }
        state.withLock {
            $0.keys = keys
            $0.keyedRooms = Set(rooms)
            $0.keysAt = now
        }
        return keys
    }

    /// Takes an announcement from the group, sent from the host `source` (an IPv6 address in brackets). - Returns:
    /// whether it named a room of this node from an address not known for it, so that this node should answer at
    /// once (at most once a second).
    public func take(_ bytes: [UInt8], from source: String, rooms: @Sendable () -> [String]) -> Bool {
        guard let announcement = try? PeerAnnouncement(parsing: bytes) else { return false }
        let nowMs = host.now()
        guard abs(Int64(clamping: announcement.sentMs) - nowMs) <= 120_000 else { return false }
        let (isOwn, isWithinRate) = state.withLock { state in
            (state.ownNonces.contains(announcement.nonce), state.intake.takeIfFree(nowMicroseconds: PeerTransport.monotonicMicroseconds()))
        }
        guard !isOwn, isWithinRate else { return false }
        let address = "\(source):\(announcement.port)"
        let named = roomKeys(rooms()).filter { announcement.names(roomKey: $0.value) }.map(\.key)
        guard !named.isEmpty else { return false }
        let now = ContinuousClock.now
        return state.withLock { state in
            var isNew = false
            for roomID in named {
                var addresses = state.found[roomID] ?? [:]
                if addresses[address] == nil {
                    isNew = true
                    logger.info("Peer discovered", metadata: ["room.id": "\(roomID)", "peer": "\(address)"])
                }
                addresses[address] = now
                if addresses.count > settings.maxPerRoom, let oldest = addresses.min(by: { $0.value < $1.value })?.key { addresses[oldest] = nil }
                state.found[roomID] = addresses
            }
            guard isNew, state.lastAnswer.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            state.lastAnswer = now
            return true
        }
    }

    /// Announces `port` for the rooms, as many announcements as their tags need.
    private func announce(
        port: Int, rooms: @Sendable () -> [String], to group: SocketAddress, outbound: NIOAsyncChannelOutboundWriter<AddressedEnvelope<ByteBuffer>>
    ) async {
        let keys = Array(roomKeys(rooms()).values).shuffled()
        var random = SystemRandomNumberGenerator()
        for start in stride(from: 0, to: keys.count, by: PeerAnnouncement.maxTags) {
            let nonce = (0..<PeerDatagram.nonceBytes).map { _ in UInt8.random(in: 0...255, using: &random) }
            let announcement = PeerAnnouncement(
                port: UInt16(port), sentMs: UInt64(max(0, host.now())), nonce: nonce,
                roomKeys: Array(keys[start..<min(keys.count, start + PeerAnnouncement.maxTags)]))
            state.withLock { state in
                state.ownNonces.append(nonce)
                if state.ownNonces.count > 64 { state.ownNonces.removeFirst() }
            }
            do {
                try await outbound.write(AddressedEnvelope(remoteAddress: group, data: ByteBuffer(bytes: announcement.encoded)))
            } catch {
                logger.warning("Peer announcement not sent", metadata: ["group": "\(settings.group)", "error": "\(error)"])
            }
        }
    }
}
