import Logging
import ParleyCore
import ParleyPeer
import ParleySync
import Synchronization

extension Node {
    /// The most peers one room may list.
    public static let maxPeersPerRoom = 16

    /// The peers configured for each room (HOST:PORT each), by room id: where a running node with `peers.listen` set
    /// syncs the room directly (docs/PROTOCOL.md §17).
    public func peerRooms() throws -> [String: [String]] {
        var rooms: [String: [String]] = [:]
        for room in try store.transportRooms(.peer) {
            let addresses = Self.peerAddresses(room.location)
            if !addresses.isEmpty { rooms[room.roomID] = addresses }
        }
        return rooms
    }

    /// Adds `address` to the room's peers.
    /// - Returns: the room's peers now.
    /// - Throws: ``ClientError`` `unknown_room` when this node holds no such room, `invalid_argument` for an address
    ///   that is not HOST:PORT or past ``maxPeersPerRoom``.
    @discardableResult
    public func addPeer(_ address: String, roomID: String) throws -> [String] {
        try validateRoomID(roomID)
        guard RoomLocation.isPeerAddress(address) else {
            throw ClientError(
                .invalidArgument, "\"\(TerminalText.escape(String(address.prefix(100))))\" is not HOST:PORT.",
                remedy: "Give the peer's address and UDP port, as 192.168.1.20:7070 or [fd00::5]:7070.")
        }
        let state = try roomState(roomID)
        guard let creator = state.creation?.creatorKey, let fingerprint = InviteCode.fingerprint(ofKey: creator) else {
            throw ClientError(.unknownRoom, "This node does not hold room \(roomID)'s create event.", remedy: "Join the room first.")
        }
        var addresses = try store.transportRoom(.peer, roomID: roomID).map { Self.peerAddresses($0.location) } ?? []
        guard !addresses.contains(address) else { return addresses }
        guard addresses.count < Self.maxPeersPerRoom else {
            throw ClientError(.invalidArgument, "Room \(roomID) has \(Self.maxPeersPerRoom) peers already.", remedy: "Remove one with `parley peer remove`.")
        }
        addresses.append(address)
        if try store.transportRoom(.peer, roomID: roomID) == nil {
            try store.addTransportRoom(.peer, roomID: roomID, location: addresses.joined(separator: " "), creatorFingerprint: fingerprint)
        } else {
            try store.moveTransportRoom(.peer, roomID: roomID, to: addresses.joined(separator: " "))
        }
        return addresses
    }

    /// Removes `address` from the room's peers.
    /// - Returns: the room's peers now.
    /// - Throws: ``ClientError`` `invalid_argument` when the room does not list it.
    @discardableResult
    public func removePeer(_ address: String, roomID: String) throws -> [String] {
        try validateRoomID(roomID)
        var addresses = try store.transportRoom(.peer, roomID: roomID).map { Self.peerAddresses($0.location) } ?? []
        guard let index = addresses.firstIndex(of: address) else {
            throw ClientError(
                .invalidArgument, "Room \(roomID) has no peer \(TerminalText.escape(String(address.prefix(100)))).",
                remedy: "See its peers with `parley peer list \(roomID)`.")
        }
        addresses.remove(at: index)
        try store.moveTransportRoom(.peer, roomID: roomID, to: addresses.joined(separator: " "))
        return addresses
    }

    /// A peer room's location: its peers' addresses, separated by spaces.
    static func peerAddresses(_ location: String) -> [String] { location.split(separator: " ").map(String.init) }
}

extension Node {
    /// Joins a room from an invite code through a peer that holds it (docs/PROTOCOL.md §17): fetches the room from
    /// the peer (its create checked against the code's creator fingerprint), signs this device's join once the room's
    /// state invites it, sends the join to the peer, and lists the peer among the room's peers.
    /// - Parameters:
    ///   - peer: the peer's address, instead of the code's first `peer` location.
    ///   - listen: where to listen meanwhile; by default a free port on 127.0.0.1 for a peer on this machine, else on
    ///     every address.
    /// - Throws: ``ClientError`` `no_usable_location` when no peer is given and the code lists none; `peer_unreachable`
    ///   when nothing came from the peer in time.
    public func joinThroughPeer(
        _ code: InviteCode, at peer: String? = nil, listen: String? = nil, passphrase: [UInt8]? = nil, timeoutMs: Int64 = 15_000
    ) async throws -> VerifiedEvent {
        let address =
            peer
            ?? code.locations.lazy.compactMap { location -> String? in
                if case .peer(let address) = location { address } else { nil }
            }.first
        guard let address, RoomLocation.isPeerAddress(address) else {
            throw ClientError(
                .noUsableLocation, "The invite code for \(code.roomID) lists no peer.", remedy: "Give the peer's address with --peer HOST:PORT.")
        }
        var given = code.preSharedSecret
        if code.needsPassphrase {
            guard let passphrase else {
                throw ClientError(
                    .invalidArgument, "Room \(code.roomID) is encrypted with a passphrase.", remedy: "Give it with --passphrase-file, or answer the prompt.")
            }
            given = try RoomEncryptionOption.preSharedSecret(passphrase: passphrase, roomID: code.roomID)
        }
        let secret = given
        if let state = try store.roomState(roomID: code.roomID), state.isJoinedDevice(user: identity.userID, key: identity.signingKeyBase64) {
            throw ClientError(.invalidArgument, "This device has already joined \(code.roomID).")
        }
        let transport = PeerTransport(host: NodeTransportHost(node: self, transport: .peer), logger: Logger(label: "parley.peer"))
        let joined = Mutex<VerifiedEvent?>(nil)
        let (userID, key, roomID) = (identity.userID, identity.signingKeyBase64, code.roomID)
        do {
            try await transport.join(
                roomID: roomID, creatorFingerprint: code.creatorFingerprint,
                preSharedRoomKey: secret.map { RoomKey.preShared(secret: $0, roomID: roomID).bytes }, peer: address,
                listen: listen ?? Self.ephemeralListen(reaching: [address]),
                timeoutMs: timeoutMs,
                isReady: { [self] in
                    guard let state = try store.roomState(roomID: roomID) else { return false }
                    return state.members[userID]?.invitedDevices[key] != nil || state.isJoinedDevice(user: userID, key: key)
                },
                then: { [self] in
                    if let secret {
                        try addPreSharedSecret(secret, roomID: roomID, fromPassphrase: code.needsPassphrase)
                        try checkPreSharedKey(roomID)
                    }
                    let event = try join(roomID)
                    try addPeer(address, roomID: roomID)
                    joined.withLock { $0 = event }
                })
        } catch let error as TransportError {
            throw ClientError(ClientError.Code(name: error.code), error.message, remedy: error.remedy)
        }
        guard let event = joined.withLock({ $0 }) else { throw ClientError(.invalidArgument, "Room \(roomID) was not joined.") }
        return event
    }
}

extension Node {
    /// The most bytes of a file a running node fetches from peers as its message arrives.
    public static let maxPrefetchBytes: Int64 = 64 << 20

    /// Where a peer room's blocks are fetched while this node runs its peer transport: the room's peers, through that
    /// transport's socket; `nil` when it runs none or the room lists no peers.
    public func peerBlockSource(_ roomID: String) throws -> (any BlockSource)? {
        let peers = reachablePeers(roomID)
        guard let transport = runningPeers.withLock({ $0 }), !peers.isEmpty else { return nil }
        return PeerBlockSource(transport: transport, roomID: roomID, peers: peers)
    }

    /// Runs `body` with a source that fetches the room's blocks from its peers: through the running node's socket, or
    /// through one of this process's own on a free port for the length of `body`; `nil` when the room lists no peers.
    public func withPeerBlockSource<T: Sendable>(_ roomID: String, _ body: @escaping @Sendable ((any BlockSource)?) async throws -> T) async throws -> T {
        if let source = try peerBlockSource(roomID) { return try await body(source) }
        guard let peers = try peerRooms()[roomID] else { return try await body(nil) }
        let transport = PeerTransport(host: NodeTransportHost(node: self, transport: .peer), logger: Logger(label: "parley.peer"))
        do {
            return try await transport.withSocket(listen: Self.ephemeralListen(reaching: peers)) {
                try await body(PeerBlockSource(transport: transport, roomID: roomID, peers: peers))
            }
        } catch let error as TransportError {
            throw ClientError(ClientError.Code(name: error.code), error.message, remedy: error.remedy)
        }
    }

    /// The room's configured peers, then those the running node found on the LAN.
    func reachablePeers(_ roomID: String) -> [String] {
        let configured = (try? peerRooms())?[roomID] ?? []
        let found = runningDiscovery.withLock { $0 }?.discovered()[roomID] ?? []
        return configured + found.filter { !configured.contains($0) }
    }

    /// A free port to listen on meanwhile: on 127.0.0.1 when every peer is on this machine, else on every address.
    static func ephemeralListen(reaching peers: [String]) -> String {
        peers.allSatisfy { $0.hasPrefix("127.") || $0.hasPrefix("[::1]") || $0.hasPrefix("localhost:") } ? "127.0.0.1:0" : "0.0.0.0:0"
    }
}

/// A peer room's blocks, fetched from its peers in turn (docs/PROTOCOL.md §17.6).
struct PeerBlockSource: BlockSource {
    let transport: PeerTransport
    let roomID: String
    let peers: [String]

    func fetch(_ block: BlockRef) async throws -> [UInt8] {
        do {
            return try await transport.fetchBlock(block, roomID: roomID, peers: peers)
        } catch let error as TransportError where error.code == "not_found" {
            throw ClientError(.notFound, error.message)
        }
    }
}
