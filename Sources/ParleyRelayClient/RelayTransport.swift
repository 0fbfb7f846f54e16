import Foundation
import Logging
import ParleyCore
import ParleySync
import Synchronization

/// The relay transport's driver (docs/PROTOCOL.md §15.5): one connection to a relay carries every room the node reaches
/// there. It subscribes with the node's chain heads and hands over what the relay sends; from the relay's heads it
/// pushes what the relay lacks (a relay that lost its data is refilled); it publishes this device's outbox and counts
/// a unit as sent only on the relay's acknowledgement. It asks the node for everything through its ``TransportHost``.
public struct RelayTransport: Sendable {
    public let host: any TransportHost
    public let logger: Logger

    /// The most events one publish frame carries: far under the frame bound for common events, and the outbox's unit.
    public static let unitEvents = 256

    public init(host: any TransportHost, logger: Logger) {
        self.host = host
        self.logger = logger
    }

    /// Where and as whom the node reaches a relay.
    public struct Session: Sendable {
        public var relay: RelayURL
        public var token: String
        public init(relay: RelayURL, token: String) {
            self.relay = relay
            self.token = token
        }
    }

    /// What one sync of a room did.
    public struct RoomReport: Sendable, Equatable {
        public var roomID: String
        /// Events the relay sent that the node took (new to it).
        public var accepted = 0
        /// Events the relay sent that the node already held or refused.
        public var received = 0
        /// Events of others the relay lacked, pushed to it.
        public var pushed = 0
        /// This device's events the relay acknowledged.
        public var sent = 0
        /// What went wrong, in the user's terms.
        public var problems: [String] = []

        public init(roomID: String) { self.roomID = roomID }
    }

    /// How long a one-shot sync waits for the relay to send anything before it gives up (ms).
    public static let silenceLimitMs: Int64 = 60_000

    /// Syncs `roomIDs` with the relay once: catch-up both ways and the outbox, then returns.
    /// - Throws: ``RelayClientError`` when the relay cannot be reached, refuses, breaks the protocol or stops answering
    ///   for ``silenceLimitMs``; the host's failures.
    public func sync(_ roomIDs: [String], session: Session) async throws -> [RoomReport] {
        let state = SyncState(roomIDs: roomIDs, blocks: blocksClient(session))
        let relay = session.relay
        return try await RelayChannel.open(relay, token: session.token, deviceKey: host.deviceKey, logger: logger) { channel in
            try await self.run(roomIDs, on: channel, relay: relay, state: state, wake: nil, synced: { _ in }, arrived: { _, _ in })
            return state.reports
        }
    }

    /// Keeps `roomIDs` in sync over one connection until the task is cancelled or the connection drops: the catch-up
    /// of ``sync(_:session:)``, then live events as they come, and the outbox each time `wake` yields (the node
    /// signed events). `synced` is told of each room's first sync, `arrived` of the events each `events` frame
    /// brought that the node took.
    /// - Throws: ``RelayClientError`` when the relay cannot be reached, refuses, or drops the connection.
    /// - Parameters:
    ///   - typing: this user's typing notices to pass on (room, typing or not): ephemeral, sent only while connected.
    ///   - typed: the relay's typing notices of others in these rooms (room, user, typing or not).
    public func keep(
        _ roomIDs: [String], session: Session, wake: AsyncStream<Void>, synced: @escaping @Sendable (RoomReport) -> Void,
        arrived: @escaping @Sendable (_ roomID: String, _ eventIDs: [String]) -> Void = { _, _ in },
        typing: AsyncStream<(roomID: String, isTyping: Bool)>? = nil,
        typed: @escaping @Sendable (_ roomID: String, _ userID: String, _ isTyping: Bool) -> Void = { _, _, _ in }
    ) async throws {
        let state = SyncState(roomIDs: roomIDs, blocks: blocksClient(session))
        let relay = session.relay
        try await RelayChannel.open(relay, token: session.token, deviceKey: host.deviceKey, logger: logger) { channel in
            try await self.run(
                roomIDs, on: channel, relay: relay, state: state, wake: wake, synced: synced, arrived: arrived, typing: typing, typed: typed)
        }
    }

    /// What the pusher does, apart from the reader so that neither side of the connection waits on the other: the
    /// reader keeps taking the relay's catch-up while the pusher publishes.
    enum Job: Sendable {
        /// Push what the relay lacks after its heads, then the room's outbox.
        case push(roomID: String, relayHeads: [String: Int64])
        /// Publish the room's outbox.
        case flush(roomID: String)
        /// Subscribe to the room again (this device's join made it readable).
        case resubscribe(roomID: String)
        /// Tell the room's other readers that this user started or stopped typing.
        case typing(roomID: String, isTyping: Bool)
    }

    /// One connection's work: the reader, the pusher, and for a one-shot sync a watch on the relay's silence (with
    /// `wake == nil` the run ends once every room caught up, pushed, and every publish was answered).
    func run(
        _ roomIDs: [String], on channel: RelayChannel, relay: RelayURL, state: SyncState, wake: AsyncStream<Void>?,
        synced: @escaping @Sendable (RoomReport) -> Void, arrived: @escaping @Sendable (String, [String]) -> Void,
        typing: AsyncStream<(roomID: String, isTyping: Bool)>? = nil, typed: @escaping @Sendable (String, String, Bool) -> Void = { _, _, _ in }
    ) async throws {
        let (jobs, queue) = AsyncStream<Job>.makeStream()
        state.queue = queue
        try await subscribe(roomIDs, on: channel, state: state)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await job in jobs {
                    switch job {
                    case .push(let roomID, let relayHeads): try await self.push(roomID, relayHeads: relayHeads, on: channel, state: state)
                    case .flush(let roomID): try await self.flushOutbox(roomID, on: channel, state: state)
                    case .resubscribe(let roomID):
                        state.update(roomID) {
                            $0.isCaughtUp = false
                            $0.hasPushed = false
                        }
                        try await self.subscribe([roomID], on: channel, state: state)
                    case .typing(let roomID, let isTyping):
                        try await channel.send(.typing(roomID: roomID, isTyping: isTyping))
                    }
                    if wake == nil && state.isDone { return }
                }
            }
            group.addTask {
                var told = Set<String>()
                while wake != nil || !state.isDone {
                    guard let frame = try await channel.next() else {
                        throw RelayClientError.protocolBroken("The relay closed the connection.", relay: relay)
                    }
                    state.heard()
                    let accepted = try await self.handle(frame, on: channel, state: state, failingOnErrors: wake == nil, relay: relay)
                    if case .events(let roomID, _) = frame, !accepted.isEmpty { arrived(roomID, accepted) }
                    if case .typingNotice(let roomID, let userID, let isTyping) = frame, state.isSubscribed(roomID) { typed(roomID, userID, isTyping) }
                    for report in state.reports where !told.contains(report.roomID) && state.isSynced(report.roomID) {
                        told.insert(report.roomID)
                        synced(report)
                    }
                }
            }
            if let typing {
                group.addTask {
                    for await notice in typing where roomIDs.contains(notice.roomID) {
                        queue.yield(.typing(roomID: notice.roomID, isTyping: notice.isTyping))
                    }
                }
            }
            if let wake {
                group.addTask {
                    for await _ in wake {
                        // A room whose first push has not happened yet gets its outbox then, after what the relay lacks.
                        // The rooms whose outbox holds the most urgent events go first (§7.6).
                        let ready = roomIDs.filter { state.hasPushed($0) }.map { roomID in
                            (roomID, priority: (try? self.host.outboxStatus(roomID: roomID).priority) ?? .normal)
                        }
                        for rank in MessagePriority.allCases.reversed() {
                            for (roomID, priority) in ready where priority == rank { queue.yield(.flush(roomID: roomID)) }
                        }
                    }
                }
            } else {
                group.addTask {
                    while !state.isDone {
                        try await Task.sleep(for: .seconds(1))
                        if state.silenceMs > Self.silenceLimitMs {
                            throw RelayClientError(
                                code: "relay_unreachable", message: "The relay \(relay) stopped answering for \(Self.silenceLimitMs / 1000) s.",
                                remedy: "Try again later; events wait in the outbox until a relay acknowledges them.")
                        }
                    }
                }
            }
            defer {
                queue.finish()
                group.cancelAll()
            }
            // One-shot: the first task to see the sync done ends it. Kept: the first failure ends it.
            try await group.next()
        }
    }

    // MARK: Steps

    func subscribe(_ roomIDs: [String], on channel: RelayChannel, state: SyncState) async throws {
        for frame in try Self.subscribeFrames(roomIDs.map { RelayFrame.RoomHeads(roomID: $0, heads: try host.chainHeads(roomID: $0)) }) {
            try await channel.send(frame)
        }
    }

    /// `subscribe` frames for `rooms`, each within the frame bound and the room count, in order.
    static func subscribeFrames(_ rooms: [RelayFrame.RoomHeads]) -> [RelayFrame] {
        var frames: [RelayFrame] = []
        var current: [RelayFrame.RoomHeads] = []
        var bytes = 64
        for room in rooms {
            // A room's entry as it is encoded: its id, its heads (a 44-character key and a seq each), and the members' names.
            let size = room.roomID.utf8.count + room.heads.count * 68 + 40
            if !current.isEmpty, bytes + size > RelayFrame.maxFrameBytes - 1_024 || current.count == RelayFrame.maxRooms {
                frames.append(.subscribe(current))
                current = []
                bytes = 64
            }
            current.append(room)
            bytes += size
        }
        if !current.isEmpty { frames.append(.subscribe(current)) }
        return frames
    }

    /// Acts on one frame from the relay.
    /// - Parameter failingOnErrors: an `error` frame that answers no request ends the run (a one-shot sync would
    ///   otherwise wait for what never comes).
    /// - Returns: the ids of the events it brought that the node took.
    func handle(_ frame: RelayFrame, on channel: RelayChannel, state: SyncState, failingOnErrors: Bool, relay: RelayURL) async throws -> [String] {
        switch frame {
        case .heads(let roomID, let relayHeads):
            guard state.isSubscribed(roomID) else { return [] }
            state.queue?.yield(.push(roomID: roomID, relayHeads: relayHeads))
        case .events(let roomID, let values):
            guard state.isSubscribed(roomID) else {
                logger.debug("Events of a room not subscribed to", metadata: ["room.id": "\(roomID)"])
                return []
            }
            return try receive(roomID, values, state: state)
        case .synced(let roomID):
            state.update(roomID) { $0.isCaughtUp = true }
            let report = state.report(roomID)
            host.synced(roomID: roomID, accepted: report.accepted, problems: report.problems.count)
        case .ack(let id, let results):
            try acknowledged(id, results, state: state)
        case .error(let code, let message, let id):
            if let id, let pending = state.takePending(id) {
                state.update(pending.roomID) { $0.report.problems.append("the relay refused a publish (\(code)): \(message)") }
            } else if failingOnErrors {
                throw RelayClientError(code: "relay_refused", message: "The relay \(relay) refused a request (\(code)): \(message)", remedy: nil)
            } else {
                logger.info("Relay error", metadata: ["code": "\(code)"])
            }
        case .typingNotice, .ready, .page:
            break
        case .auth, .subscribe, .publish, .history, .typing:
            break  // never read from a relay: RelayFrame(parsing:from: .relay) makes none of these
        }
        return []
    }

    /// Hands over events the relay sent. A room the node does not hold yet (it is joining) is pinned first: its
    /// create must be signed by the creator the invite code names.
    /// - Returns: the ids of the events the node took.
    func receive(_ roomID: String, _ values: [JSONValue], state: SyncState) throws -> [String] {
        let allWires = values.map { CanonicalJSON.encode($0) }
        let allVerified = VerifiedEvent.verifyInParallel(allWires)
        // Only the room's own events: a relay never brings another room into the node under this one's name.
        let own = allVerified.indices.filter { (try? allVerified[$0].get().event.roomID).map { $0 == roomID } ?? true }
        if own.count < values.count {
            state.update(roomID) {
                $0.report.problems.append("the relay sent \(values.count - own.count) event(s) of other rooms as this room's; they were left out")
            }
        }
        var verified = own.map { allVerified[$0] }
        var lines = own.map { allWires[$0] }
        let wires = lines
        if try !host.holdsCreate(roomID: roomID) {
            guard let room = try host.room(roomID),
                let createIndex = verified.firstIndex(where: { (try? $0.get().event.type) == EventType.create })
            else {
                state.update(roomID) { $0.report.problems.append("the relay sent events of the room before its create; they were left out") }
                return []
            }
            let create = try verified[createIndex].get()
            guard create.event.roomID == roomID, InviteCode.fingerprint(ofKey: create.event.senderKey) == room.creatorFingerprint else {
                state.update(roomID) {
                    $0.report.problems.append("the relay's room \(roomID) was not created by the device the invite names: nothing of it was taken")
                    $0.isCaughtUp = true
                }
                throw RelayClientError(
                    code: "relay_wrong_room", message: "The relay's room \(roomID) was not created by the device the invite code names.",
                    remedy: "Ask for a new invite code; the relay may be serving another room under this id.")
            }
            var founding = [create]
            if let join = verified.compactMap({ try? $0.get() }).first(where: {
                $0.event.senderKey == create.event.senderKey && $0.event.seq == 2 && $0.event.type == EventType.member
            }) {
                founding.append(join)
            }
            _ = try host.pin(roomID: roomID, founding: founding)
            let pinned = Set(founding.map(\.hash))
            let kept = verified.indices.filter { (try? verified[$0].get()).map { !pinned.contains($0.hash) } ?? true }
            verified = kept.map { verified[$0] }
            lines = kept.map { wires[$0] }
        }
        let report = try host.ingest(roomID: roomID, verified: verified, lines: lines, receivedMs: host.now())
        state.update(roomID) { room in
            room.report.received += values.count
            room.report.accepted += report.outcomes.filter { $0 == .accepted }.count
            for outcome in report.outcomes {
                if case .rejected(let reason) = outcome { room.report.problems.append("an event the relay sent was refused: \(reason)") }
            }
        }
        return zip(report.outcomes, report.events).compactMap { outcome, event in outcome == .accepted ? event?.eventID : nil }
    }

    /// Pushes what the relay lacks of the room after `relayHeads`: others' events (and this device's that it confirmed
    /// before, when the relay lost them) as refill, then this device's outbox, in chain order.
    func push(_ roomID: String, relayHeads: [String: Int64], on channel: RelayChannel, state: SyncState) async throws {
        let units = try outboxUnits(roomID)
        let ownFrom = units.first?.firstSeq ?? Int64.max
        var after: [String: Int64]? = relayHeads
        var batch: [ChainedWire] = []
        var batchBytes = 0
        func sendBatch() async throws {
            guard !batch.isEmpty else { return }
            let id = state.newPending(.init(roomID: roomID, unit: nil, events: batch.count))
            try await channel.send(.publish(id: id, events: try batch.map { try JSONParser().parse($0.wire) }))
            batch = []
            batchBytes = 0
        }
        while let from = after {
            let page = try host.chainEvents(roomID: roomID, after: from, limit: 1_000)
            for event in page.events where !(event.senderKey == host.deviceKey && event.seq >= ownFrom) {
                if batch.count == Self.unitEvents || batchBytes + event.wire.count > RelayFrame.maxFrameBytes - 4_096 { try await sendBatch() }
                batch.append(event)
                batchBytes += event.wire.count + 1
            }
            after = page.next
        }
        try await sendBatch()
        for unit in units where !state.isInFlight(unit.id) { try await publish(unit, on: channel, state: state) }
        // Before the push counts as done: a one-shot sync ends once every room has pushed and its publishes are answered.
        try await flushBlockDeletions(roomID, with: state.blocks)
        state.update(roomID) { $0.hasPushed = true }
        // Events signed while this push ran are in the outbox now.
        try await flushOutbox(roomID, on: channel, state: state)
    }

    /// This device's outbox in the room: units claimed before and not confirmed, then new units of what is pending.
    func outboxUnits(_ roomID: String) throws -> [OutboxFile] {
        var units = try host.unconfirmedOutbox(roomID: roomID)
        while let unit = try host.claimOutbox(
            roomID: roomID, limit: Self.unitEvents,
            assemble: { pending, _ in
                var content: [UInt8] = []
                var count = 0
                for event in pending {
                    if count > 0, content.count + event.wire.count > RelayFrame.maxFrameBytes - 4_096 { break }
                    content += event.wire + [0x0A]
                    count += 1
                }
                return ("seq-\(pending[0].seq)-\(pending[count - 1].seq)", count, content)
            })
        {
            units.append(unit)
        }
        return units
    }

    func flushOutbox(_ roomID: String, on channel: RelayChannel, state: SyncState) async throws {
        for unit in try outboxUnits(roomID) where !state.isInFlight(unit.id) { try await publish(unit, on: channel, state: state) }
        try await flushBlockDeletions(roomID, with: state.blocks)
    }

    /// The relay's block API as this device.
    public func blocksClient(_ session: Session) -> RelayBlocksClient {
        RelayBlocksClient(relay: session.relay, token: session.token, deviceKey: host.deviceKey)
    }

    func flushBlockDeletions(_ roomID: String, with client: RelayBlocksClient) async throws {
        let doomed = try host.blockDeletions(roomID: roomID)
        guard !doomed.isEmpty else { return }
        var done: [BlockID] = []
        for block in doomed {
            do {
                try await client.delete(block.id, roomID: roomID)
            } catch let error as RelayClientError where error.code == "not_uploader" {
                // Another account's upload (a moderator redacted someone's file): only its sender can take it back.
            }
            done.append(block.id)
        }
        try host.blockDeletionsDone(roomID: roomID, ids: done)
    }

    func publish(_ unit: OutboxFile, on channel: RelayChannel, state: SyncState) async throws {
        try await uploadBlocks(of: unit, with: state.blocks)
        let lines = unit.content.split(separator: 0x0A).map(Array.init)
        let id = state.newPending(.init(roomID: unit.roomID, unit: unit, events: lines.count))
        try await channel.send(.publish(id: id, events: try lines.map { try JSONParser().parse($0) }))
    }

    /// Uploads the blocks of the files the unit's events share, before the events: a member who sees a message finds
    /// its file. Only those the relay lacks are sent, a few at a time.
    func uploadBlocks(of unit: OutboxFile, with client: RelayBlocksClient) async throws {
        let (blocks, _) = try host.fileBlocks(roomID: unit.roomID, seqs: unit.firstSeq...unit.lastSeq)
        guard !blocks.isEmpty else { return }
        let missing = try await client.missing(blocks.map(\.id), roomID: unit.roomID)
        let sending = blocks.filter { missing.contains($0.id) }
        guard !sending.isEmpty else { return }
        let host = host
        let roomID = unit.roomID
        let window = BlockTransfer.concurrency(for: sending.map(\.tier).max()!)
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let block = sending[next]
                next += 1
                group.addTask {
                    // A block this node no longer holds cannot be sent: the message goes, and its file is incomplete.
                    guard let bytes = try host.block(block.id) else { return }
                    try await client.put(bytes, id: block.id, roomID: roomID)
                }
            }
            while next < min(window, sending.count) { add() }
            while try await group.next() != nil {
                if next < sending.count { add() }
            }
        }
    }

    func acknowledged(_ id: Int64, _ results: [RelayFrame.PublishResult], state: SyncState) throws {
        guard let pending = state.takePending(id) else { return }
        let refused = results.filter { !$0.isHeld }
        let noted = results.filter { $0.isHeld && $0.code != nil }
        state.update(pending.roomID) { room in
            for result in (refused + noted).prefix(5) {
                room.report.problems.append(
                    "the relay \(result.isHeld ? "kept" : "refused") event \(result.eventID ?? "?") (\(result.code ?? result.verdict.rawValue)): \(result.reason ?? "no reason given")"
                )
            }
        }
        guard let unit = pending.unit else {
            state.update(pending.roomID) { $0.report.pushed += results.filter { $0.verdict == .stored }.count }
            return
        }
        guard refused.isEmpty else {
            // Refused for now only (the account's allowance, the relay's database): publish again shortly rather
            // than at the next event or connection.
            if refused.allSatisfy({ ["rate_limited", "unavailable"].contains($0.code) }), let queue = state.queue {
                Task {
                    try? await Task.sleep(for: .seconds(1))
                    queue.yield(.flush(roomID: unit.roomID))
                }
            }
            return
        }
        try host.confirmOutbox(unit, object: ReceivedObject(name: unit.name, size: Int64(unit.content.count), events: results.count, problem: nil))
        state.update(unit.roomID) { $0.report.sent += results.count }
        // This device's join may have made the room readable to it: ask again for all of it.
        let joined = unit.content.split(separator: 0x0A).contains { line in
            guard let event = try? Event.parse(line), event.type == EventType.member, event.senderKey == host.deviceKey else { return false }
            return event.content?["membership"] == .string("join") && event.content?["user_id"] == .string(host.userID)
        }
        if joined { state.queue?.yield(.resubscribe(roomID: unit.roomID)) }
    }
}

/// The progress of one connection's sync, shared by its reader and its outbox writer.
final class SyncState: Sendable {
    struct Room {
        var report: RoomReport
        var isCaughtUp = false
        var hasPushed = false
    }

    struct Pending {
        var roomID: String
        var unit: OutboxFile?
        var events: Int
    }

    typealias RoomReport = RelayTransport.RoomReport

    private struct State {
        var rooms: [String: Room] = [:]
        var order: [String] = []
        var pending: [Int64: Pending] = [:]
        var nextID: Int64 = 1
    }

    private let state = Mutex(State())
    private let jobs = Mutex<AsyncStream<RelayTransport.Job>.Continuation?>(nil)
    private let lastHeardMs = Mutex(Int64(0))

    /// Where the reader hands work to the pusher.
    var queue: AsyncStream<RelayTransport.Job>.Continuation? {
        get { jobs.withLock { $0 } }
        set { jobs.withLock { $0 = newValue } }
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Notes that the relay sent something.
    func heard() { lastHeardMs.withLock { $0 = Self.nowMs() } }
    /// How long the relay has been silent (ms).
    var silenceMs: Int64 { Self.nowMs() - lastHeardMs.withLock { $0 } }

    /// The relay's block API, for the files the outbox's messages share.
    let blocks: RelayBlocksClient

    init(roomIDs: [String], blocks: RelayBlocksClient) {
        self.blocks = blocks
        heard()
        state.withLock { state in
            for roomID in roomIDs where state.rooms[roomID] == nil {
                state.rooms[roomID] = Room(report: RoomReport(roomID: roomID))
                state.order.append(roomID)
            }
        }
    }

    func isSubscribed(_ roomID: String) -> Bool { state.withLock { $0.rooms[roomID] != nil } }
    func hasPushed(_ roomID: String) -> Bool { state.withLock { $0.rooms[roomID]?.hasPushed ?? false } }
    func isSynced(_ roomID: String) -> Bool { state.withLock { $0.rooms[roomID].map { $0.isCaughtUp && $0.hasPushed } ?? false } }

    /// Every room caught up and pushed, and every publish answered.
    var isDone: Bool { state.withLock { $0.pending.isEmpty && $0.rooms.values.allSatisfy { $0.isCaughtUp && $0.hasPushed } } }

    var reports: [RoomReport] { state.withLock { state in state.order.compactMap { state.rooms[$0]?.report } } }
    func report(_ roomID: String) -> RoomReport { state.withLock { $0.rooms[roomID]?.report ?? RoomReport(roomID: roomID) } }

    func update(_ roomID: String, _ change: (inout Room) -> Void) {
        state.withLock { state in
            guard var room = state.rooms[roomID] else { return }
            change(&room)
            state.rooms[roomID] = room
        }
    }

    func newPending(_ pending: Pending) -> Int64 {
        state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.pending[id] = pending
            return id
        }
    }

    func takePending(_ id: Int64) -> Pending? { state.withLock { $0.pending.removeValue(forKey: id) } }

    func isInFlight(_ unitID: Int64) -> Bool { state.withLock { $0.pending.values.contains { $0.unit?.id == unitID } } }
}
