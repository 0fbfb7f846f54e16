import Foundation
import Logging
import ParleyCore
import ParleyRelayClient
import ParleyStore
import ParleySync

/// A node's sessions at relays, kept in `$PARLEY_HOME/relays.json` (mode 0600: the tokens are secrets).
public struct RelaySessionRecord: Sendable, Equatable {
    public var relay: String
    public var userID: String
    public var token: String
    public var expiresMs: Int64
}

/// The node's side of relay rooms (docs/PROTOCOL.md §15): its account and device at each relay, creating a room at a
/// relay, its invite code, joining from a code that lists a relay, and syncing through ``RelayTransport``.
public struct RelayClient: Sendable {
    public let node: Node
    public let logger: Logger

    public init(node: Node, logger: Logger = Logger(label: "parley.relay.client")) {
        self.node = node
        self.logger = logger
    }

    var transport: RelayTransport { RelayTransport(host: NodeTransportHost(node: node, transport: .relay), logger: logger) }

    static func url(_ text: String) throws(ClientError) -> RelayURL {
        do { return try RelayURL(text) } catch { throw ClientError(describing: error) }
    }

    // MARK: Accounts

    var sessionsPath: String { node.home.url.appendingPathComponent("relays.json").path }

    /// The sessions this home holds, by relay.
    public func sessions() -> [RelaySessionRecord] {
        guard let data = FileManager.default.contents(atPath: sessionsPath), data.count <= 1 << 20,
            case .array(let entries)? = try? JSONParser().parse(Array(data))["sessions"]
        else { return [] }
        return entries.compactMap { entry in
            guard case .string(let relay)? = entry["relay"], case .string(let userID)? = entry["user_id"], case .string(let token)? = entry["token"],
                case .integer(let expires)? = entry["expires_ms"]
            else { return nil }
            return RelaySessionRecord(relay: relay, userID: userID, token: token, expiresMs: expires)
        }
    }

    func saveSessions(_ sessions: [RelaySessionRecord]) throws {
        let entries: [JSONValue] = sessions.map {
            ["relay": .string($0.relay), "user_id": .string($0.userID), "token": .string($0.token), "expires_ms": .integer($0.expiresMs)]
        }
        try node.home.replaceFile(atPath: sessionsPath, contents: CanonicalJSON.encode(["sessions": .array(entries)]) + [0x0A], mode: 0o600)
    }

    /// The live session at `relay`.
    /// - Throws: ``ClientError`` `not_logged_in` saying how to log in.
    public func session(at relay: RelayURL) throws -> RelayTransport.Session {
        guard let record = sessions().first(where: { $0.relay == relay.base }), record.expiresMs > node.clock() else {
            throw ClientError(
                .notLoggedIn, "This node has no live session at the relay \(relay).",
                remedy: "Log in: parley account login --relay \(relay) (or register first: parley account register --relay \(relay)).")
        }
        return RelayTransport.Session(relay: relay, token: record.token)
    }

    /// Makes an account for this home's user at `relay`, then logs in (``login(relay:password:)``).
    public func register(relay text: String, password: String, invite: String? = nil) async throws {
        let relay = try Self.url(text)
        try await call { try await RelayAccountsClient(relay: relay).register(userID: node.identity.userID, password: password, invite: invite) }
        try await login(relay: text, password: password)
    }

    /// Logs in to this home's user's account at `relay`, adds this device to it (signing the relay's challenge) and
    /// keeps the session.
    public func login(relay text: String, password: String) async throws {
        let relay = try Self.url(text)
        let accounts = RelayAccountsClient(relay: relay)
        let identity = node.identity
        let session = try await call { try await accounts.login(userID: identity.userID, password: password) }
        try await call {
            try await accounts.addDevice(token: session.token, userID: identity.userID, deviceKey: identity.signingKeyBase64) { identity.signingKey.sign($0) }
        }
        var sessions = sessions().filter { $0.relay != relay.base }
        sessions.append(RelaySessionRecord(relay: relay.base, userID: identity.userID, token: session.token, expiresMs: session.expiresMs))
        try saveSessions(sessions)
    }

    /// Ends the session at `relay` (with `everywhere`, every session of the account) and forgets it.
    public func logout(relay text: String, everywhere: Bool = false) async throws {
        let relay = try Self.url(text)
        let session = try session(at: relay)
        let accounts = RelayAccountsClient(relay: relay)
        try await call {
            if everywhere { try await accounts.logoutEverywhere(token: session.token) } else { try await accounts.logout(token: session.token) }
        }
        try saveSessions(sessions().filter { $0.relay != relay.base })
    }

    public func changePassword(relay text: String, old: String, new: String) async throws {
        let relay = try Self.url(text)
        let session = try session(at: relay)
        try await call { try await RelayAccountsClient(relay: relay).changePassword(token: session.token, old: old, new: new) }
    }

    public func deleteAccount(relay text: String, password: String) async throws {
        let relay = try Self.url(text)
        let session = try session(at: relay)
        try await call { try await RelayAccountsClient(relay: relay).deleteAccount(token: session.token, password: password) }
        try saveSessions(sessions().filter { $0.relay != relay.base })
    }

    // MARK: Rooms

    /// What one sync of a relay room did.
    public typealias RoomReport = RelayTransport.RoomReport

    /// A room this node reaches through a relay.
    public struct RelayRoom: Sendable, Equatable {
        public var roomID: String
        /// The relay's base URL.
        public var relay: String
    }

    /// The rooms this node reaches through relays.
    public func rooms() throws -> [RelayRoom] { try node.store.transportRooms(.relay).map { RelayRoom(roomID: $0.roomID, relay: $0.location) } }

    /// Creates a room that lives at `relay`: its first events, then a sync that publishes them. Nothing is kept when
    /// the relay cannot take them, so the same command can be run again.
    public func createRoom(_ roomID: String, relay text: String, name: String? = nil, encryption: RoomEncryptionOption? = nil) async throws
        -> [VerifiedEvent]
    {
        try node.validateRoomID(roomID)
        let relay = try Self.url(text)
        let session = try session(at: relay)
        guard let fingerprint = InviteCode.fingerprint(ofKey: node.identity.signingKeyBase64) else { throw ClientError(.io, "The device key is unreadable.") }
        if try node.store.roomIDs().contains(roomID) { throw ClientError(.invalidArgument, "Room \(roomID) already exists on this node.") }
        let events = try node.createRoom(roomID, name: name, encryption: encryption)
        do {
            try node.store.addTransportRoom(.relay, roomID: roomID, location: relay.base, creatorFingerprint: fingerprint)
        } catch {
            _ = try? node.forgetRoom(roomID)
            throw error
        }
        let reports: [RelayTransport.RoomReport]
        do {
            reports = try await call { try await transport.sync([roomID], session: session) }
        } catch {
            // The relay may hold the create already: taking the room back and signing another create would fork this
            // device's chain there. The events wait in the outbox instead.
            var failure = ClientError(describing: error, home: node.home)
            failure.message = "Room \(roomID) was created here, but the relay \(relay) has not acknowledged its first events: \(failure.message)"
            failure.remedy = "They wait in the outbox; `parley sync` or `parley node` sends them once the relay answers."
            throw failure
        }
        if let problem = reports.first?.problems.first, (reports.first?.sent ?? 0) == 0 {
            // Refused outright (it holds another room of that id): nothing of this one is anywhere else.
            _ = try? node.forgetRoom(roomID)
            throw ClientError(.relayRefused, "The relay \(relay) did not take room \(roomID): \(problem).", remedy: "Choose another room id.")
        }
        return events
    }

    /// Adds a relay to a room this node holds: from now on its events reach the relay too.
    /// - Parameter replacing: move the room from the relay it uses now to `relay` (another relay of the same
    ///   deployment, when that one is gone); what the old one did not acknowledge is published at the new one.
    public func addRelay(_ roomID: String, relay text: String, replacing: Bool = false) async throws -> [RelayTransport.RoomReport] {
        let relay = try Self.url(text)
        let session = try session(at: relay)
        guard let creation = try node.store.roomState(roomID: roomID)?.creation, let fingerprint = InviteCode.fingerprint(ofKey: creation.creatorKey)
        else { throw ClientError(.unknownRoom, "This node holds no room \(roomID).") }
        if replacing, try node.store.transportRoom(.relay, roomID: roomID) != nil {
            try node.store.moveTransportRoom(.relay, roomID: roomID, to: relay.base)
        } else {
            try node.store.addTransportRoom(.relay, roomID: roomID, location: relay.base, creatorFingerprint: fingerprint)
        }
        return try await call { try await transport.sync([roomID], session: session) }
    }

    /// Where the blocks of a relay room's files are fetched: the relay, as this device; `nil` for a room of no relay.
    /// - Throws: ``ClientError`` `not_logged_in` when this node has no live session there.
    public func blockSource(_ roomID: String) throws -> (any BlockSource)? {
        guard let room = try node.store.transportRoom(.relay, roomID: roomID) else { return nil }
        return RelayBlockSource(client: transport.blocksClient(try session(at: try Self.url(room.location))), roomID: roomID)
    }

    /// The relay location of a room, when it has one.
    public func location(_ roomID: String) throws -> RoomLocation? {
        try node.store.transportRoom(.relay, roomID: roomID).map { .relay(url: $0.location) }
    }

    /// Joins a room from an invite code through `relay` (the code's first relay unless given): the room's events
    /// come from the relay, pinned to the creator the code names; then this device's join is published.
    public func join(_ code: InviteCode, at relayText: String? = nil) async throws -> VerifiedEvent {
        let relay: RelayURL
        if let relayText {
            relay = try Self.url(relayText)
        } else {
            guard let url = code.locations.lazy.compactMap({ location -> String? in if case .relay(let url) = location { url } else { nil } }).first
            else { throw ClientError(.noUsableLocation, "The invite code lists no relay.") }
            relay = try Self.url(url)
        }
        if code.needsPassphrase || code.preSharedSecret != nil {
            throw ClientError(
                .invalidArgument, "Joining a pre-shared-key room through a relay is not supported yet.", remedy: "Join it through its bucket.")
        }
        let session = try session(at: relay)
        if try node.store.transportRoom(.relay, roomID: code.roomID) == nil {
            try node.store.addTransportRoom(.relay, roomID: code.roomID, location: relay.base, creatorFingerprint: code.creatorFingerprint)
        }
        let reports = try await call { try await transport.sync([code.roomID], session: session) }
        guard let state = try node.store.roomState(roomID: code.roomID), state.creation != nil else {
            _ = try? node.forgetRoom(code.roomID)
            throw ClientError(
                .unknownRoom, "The relay \(relay) holds no room \(code.roomID)" + (reports.first?.problems.first.map { ": \($0)" } ?? "."),
                remedy: "Check the invite code, or ask a member to add the room to this relay.")
        }
        if state.isJoinedDevice(user: node.identity.userID, key: node.identity.signingKeyBase64) {
            throw ClientError(.invalidArgument, "This device has already joined \(code.roomID).")
        }
        guard state.members[node.identity.userID]?.invitedDevices[node.identity.signingKeyBase64] != nil else {
            throw ClientError(
                .notAllowed, "\(node.identity.userID) with this device key is not invited to \(code.roomID) (as far as the relay shows).",
                remedy:
                    "Ask a member to run `parley room invite \(code.roomID) \(node.identity.userID) --key \(node.identity.signingKeyBase64)`; then try again."
            )
        }
        let event = try node.join(code.roomID)
        _ = try await sync([code.roomID])
        return event
    }

    /// Syncs relay rooms (all of them unless named), one connection per relay.
    /// - Returns: a report per room; a relay that fails throws.
    public func sync(_ roomIDs: [String]? = nil) async throws -> [RelayTransport.RoomReport] {
        var byRelay: [String: [String]] = [:]
        for room in try rooms() where roomIDs?.contains(room.roomID) ?? true { byRelay[room.relay, default: []].append(room.roomID) }
        var reports: [RelayTransport.RoomReport] = []
        for (relay, rooms) in byRelay.sorted(by: { $0.key < $1.key }) {
            let session = try session(at: try Self.url(relay))
            var synced: [RelayTransport.RoomReport]
            do {
                synced = try await call { try await transport.sync(rooms, session: session) }
                for room in rooms { try? node.store.clearSendFailure(.relay, roomID: room) }
            } catch {
                // Kept, so `parley status` shows the messages waiting as FAILED after a few attempts.
                let failure = ClientError(describing: error)
                for room in rooms {
                    try? node.store.recordSendFailure(.relay, roomID: room, reason: failure.message, code: failure.code.name, nowMs: node.clock())
                }
                throw error
            }
            // What was read may be a new member device to share keys with, or a request to answer: the keys go out now;
            // and what arrived is acknowledged when the room's pace allows.
            let exchanged = await rooms.asyncFilter { await exchangeKeys($0) }
            let acknowledged = rooms.filter { room in
                if case .sent? = try? node.acknowledgeDelivery(room) { true } else { false }
            }
            let owing = rooms.filter { exchanged.contains($0) || acknowledged.contains($0) }
            if !owing.isEmpty {
                let again = try await call { try await transport.sync(owing, session: session) }
                for index in synced.indices {
                    if let later = again.first(where: { $0.roomID == synced[index].roomID }) {
                        synced[index].sent += later.sent
                        synced[index].problems += later.problems
                    }
                }
            }
            reports += synced
        }
        return reports
    }

    /// Shares and forwards keys in an encrypted room after a sync (`Node+KeyForwarding`).
    /// - Returns: whether key events were signed, to be published.
    func exchangeKeys(_ roomID: String) async -> Bool {
        do {
            let lock = try await node.home.lockForPublishingAsync()
            return try withExtendedLifetime(lock) { try !node.exchangeKeysHoldingLock(roomID).isEmpty }
        } catch {
            logger.warning("Sharing keys failed", metadata: ["room.id": "\(roomID)", "error": "\(ClientError(describing: error).message)"])
            return false
        }
    }

    func call<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as CancellationError { throw error } catch {
            throw ClientError(describing: error, home: node.home)
        }
    }
}

extension Array where Element: Sendable {
    func asyncFilter(_ isIncluded: (Element) async -> Bool) async -> [Element] {
        var kept: [Element] = []
        for element in self where await isIncluded(element) { kept.append(element) }
        return kept
    }
}

/// A relay room's blocks (docs/PROTOCOL.md §16.6).
struct RelayBlockSource: BlockSource {
    let client: RelayBlocksClient
    let roomID: String

    func fetch(_ block: BlockRef) async throws -> [UInt8] {
        do {
            return try await client.get(block, roomID: roomID)
        } catch let error as RelayClientError where error.code == "not_found" {
            throw ClientError(.notFound, "The relay \(client.relay) holds no block \(block.id.hex.prefix(16))… of \(roomID).")
        }
    }
}
