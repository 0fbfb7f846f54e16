import ParleyCore
import Synchronization

/// Frames waiting to be written to one connection, bounded in bytes. Live events that would pass the bound close the
/// queue instead (the client fell behind: it is disconnected and catches up when it reconnects); a catch-up waits for
/// room instead, since it is the connection's own request.
///
/// While frames wait (the client reads slower than events come), the writer takes the most urgent first (docs/PROTOCOL.md
/// §7.6): of the frames holding the highest priority waiting, the first; and before it any earlier frame of the same
/// room, so a room's events still go in order and no chain reaches the client with a gap. Equal priorities go in order.
final class FrameQueue: Sendable {
    enum Closing: Sendable, Equatable {
        /// The connection ends normally.
        case done
        /// The client did not read: close code 1008.
        case slowConsumer
        /// Close with this code and reason.
        case protocolViolation(code: UInt16, reason: String)
        /// Reading failed (a frame too large, text that is not UTF-8): the WebSocket layer closes with that failure's
        /// code once the session ends.
        case inboundFailed
    }

    /// A frame waiting to be written: a whole one, or live events of a room, which the room's next live events join
    /// while it waits — so a busy room costs a reader one frame (and one write) per batch, not per event.
    private enum Queued {
        case frame(String)
        /// `priority`: the highest of its events'.
        case events(roomID: String, body: [UInt8], count: Int, priority: MessagePriority)

        var byteCount: Int {
            switch self {
            case .frame(let text): text.utf8.count
            case .events(let roomID, let body, _, _): body.count + RelayHub.eventsFrameOverhead(roomID: roomID)
            }
        }

        var text: String {
            switch self {
            case .frame(let text): text
            case .events(let roomID, let body, _, _): RelayHub.eventsFrame(roomID: roomID, body: body)
            }
        }

        var priority: MessagePriority {
            switch self {
            case .frame: .normal
            case .events(_, _, _, let priority): priority
            }
        }

        var roomID: String? {
            switch self {
            case .frame: nil
            case .events(let roomID, _, _, _): roomID
            }
        }
    }

    private struct State {
        /// Taken frames are `nil`: the head's, and any the writer took ahead of it.
        var frames: [Queued?] = []
        var head = 0
        var bytes = 0
        /// How many frames wait at each priority, by ``MessagePriority/rank``.
        var waiting = [0, 0, 0, 0]
        var closing: Closing?
        /// The writer found the queue empty and waits for `wake`.
        var writerWaits = false
        var wake: (@Sendable () -> Void)?
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        var closeWaiters: [CheckedContinuation<Closing, Never>] = []

        /// Where the frame to write next is (some frame waits): the head, unless a frame of higher priority waits; then
        /// the first frame of that frame's room, so the room's order holds.
        func nextIndex() -> Int {
            let top = waiting.lastIndex { $0 > 0 }!
            guard frames[head]!.priority.rank != top else { return head }
            let first = frames[head...].firstIndex { $0?.priority.rank == top }!
            guard let roomID = frames[first]!.roomID else { return first }
            return frames[head...].firstIndex { $0?.roomID == roomID }!
        }

        /// The writer's wake-up when it waits (it then waits no more).
        mutating func takeWake() -> (@Sendable () -> Void)? {
            guard writerWaits else { return nil }
            writerWaits = false
            return wake
        }
    }

    let maxBytes: Int
    private let state = Mutex(State())

    init(maxBytes: Int) { self.maxBytes = maxBytes }

    /// Queues a live frame.
    /// - Returns: `false` when the queue is closed or the frame would pass the bound (the queue is closed then).
    @discardableResult func push(_ frame: String) -> Bool { push(.frame(frame)) }

    /// Queues live events of a room (`body`: their wire forms joined by commas; `priority`, the highest of theirs),
    /// joining them to the room's events waiting last in the queue when the frame stays within the protocol's bounds.
    /// - Returns: `false` when the queue is closed or the events would pass the bound (the queue is closed then).
    @discardableResult func push(events body: [UInt8], count: Int, roomID: String, priority: MessagePriority = .normal) -> Bool {
        push(.events(roomID: roomID, body: body, count: count, priority: priority))
    }

    private func push(_ item: Queued) -> Bool {
        let size = item.byteCount
        let (wake, accepted): ((@Sendable () -> Void)?, Bool) = state.withLock { state in
            guard state.closing == nil else { return (nil, false) }
            guard state.bytes + size <= maxBytes else { return (nil, false) }
            if case .events(let roomID, let body, let count, let priority) = item, state.head < state.frames.count,
                case .events(roomID, var waiting, let waitingCount, let waitingPriority)? = state.frames[state.frames.count - 1],
                waitingCount + count <= RelayFrame.maxEvents,
                waiting.count + 1 + size <= RelayFrame.maxFrameBytes
            {
                // Emptied first, so that the append below grows the one buffer in place.
                state.frames[state.frames.count - 1] = nil
                waiting.append(UInt8(ascii: ","))
                waiting += body
                let joined = max(priority, waitingPriority)
                state.frames[state.frames.count - 1] = .events(roomID: roomID, body: waiting, count: waitingCount + count, priority: joined)
                state.waiting[waitingPriority.rank] -= 1
                state.waiting[joined.rank] += 1
                state.bytes += body.count + 1
            } else {
                state.frames.append(item)
                state.waiting[item.priority.rank] += 1
                state.bytes += size
            }
            return (state.takeWake(), true)
        }
        wake?()
        if !accepted, closing == nil { close(.slowConsumer) }
        return accepted
    }

    /// Queues a frame of the connection's own request, waiting while the queue is over half full.
    /// - Returns: `false` when the queue is closed.
    func pushWaiting(_ frame: String) async -> Bool {
        while true {
            let full = state.withLock { $0.closing == nil && $0.bytes > maxBytes / 2 }
            guard full else { break }
            await withCheckedContinuation { continuation in
                let waitNow = state.withLock { state in
                    guard state.closing == nil, state.bytes > maxBytes / 2 else { return false }
                    state.roomWaiters.append(continuation)
                    return true
                }
                if !waitNow { continuation.resume() }
            }
        }
        return push(frame)
    }

    /// What the writer takes next.
    enum Take: Equatable {
        case frame(String)
        /// Nothing now: the writer's wake-up runs at the next push or close.
        case empty
        /// Closed, and what was queued before is written (for a slow consumer's queue, which is what is wrong, dropped).
        case closed
    }

    /// Sets what runs when a frame or a close arrives while the writer waits; the writer waits from the start.
    func setWriter(wake: @escaping @Sendable () -> Void) {
        state.withLock { state in
            state.wake = wake
            state.writerWaits = true
        }
    }

    /// The next frame to write, without waiting.
    func take() -> Take {
        let (take, waiters): (Take, [CheckedContinuation<Void, Never>]) = state.withLock { state in
            if state.head < state.frames.count, state.closing != .slowConsumer {
                let index = state.nextIndex()
                let item = state.frames[index]!
                state.frames[index] = nil
                while state.head < state.frames.count, state.frames[state.head] == nil { state.head += 1 }
                state.waiting[item.priority.rank] -= 1
                state.bytes -= item.byteCount
                if state.head > 1024, state.head * 2 > state.frames.count {
                    state.frames.removeFirst(state.head)
                    state.head = 0
                }
                var waiters: [CheckedContinuation<Void, Never>] = []
                if state.bytes <= maxBytes / 2 { swap(&waiters, &state.roomWaiters) }
                return (.frame(item.text), waiters)
            }
            if state.closing != nil { return (.closed, []) }
            state.writerWaits = true
            return (.empty, [])
        }
        for waiter in waiters { waiter.resume() }
        return take
    }

    /// Why the queue closed, once it did.
    var closing: Closing? { state.withLock { $0.closing } }

    /// Closes the queue: the writer ends (after writing what is queued, but for a slow consumer).
    func close(_ closing: Closing) {
        let (wake, waiters, closeWaiters, reason) = state.withLock { state in
            if state.closing == nil { state.closing = closing }
            defer {
                state.roomWaiters = []
                state.closeWaiters = []
            }
            return (state.takeWake(), state.roomWaiters, state.closeWaiters, state.closing!)
        }
        wake?()
        for waiter in waiters { waiter.resume() }
        for waiter in closeWaiters { waiter.resume(returning: reason) }
    }

    /// Returns once the queue is closed, with why.
    func waitUntilClosed() async -> Closing {
        await withCheckedContinuation { continuation in
            let closed: Closing? = state.withLock { state in
                if state.closing == nil { state.closeWaiters.append(continuation) }
                return state.closing
            }
            if let closed { continuation.resume(returning: closed) }
        }
    }
}

/// One authenticated WebSocket connection: who it speaks for, the rooms it subscribed to, its outbound queue.
final class RelayConnection: Sendable {
    let id: Int
    let userID: String
    let deviceKey: String
    let queue: FrameQueue
    /// The rooms it subscribed to.
    let rooms = Mutex<Set<String>>([])
    /// Its allowance of typing notices.
    let typing = Mutex(LoginLimits.Bucket(tokens: 5, updatedMs: 0))

    init(id: Int, userID: String, deviceKey: String, maxQueuedBytes: Int) {
        self.id = id
        self.userID = userID
        self.deviceKey = deviceKey
        queue = FrameQueue(maxBytes: maxQueuedBytes)
    }
}

/// The relay's live connections by room, and fan-out: each room's new events go, as frames built once, to every
/// connection subscribed to the room whose device the room's state lets read it.
final class RelayHub: Sendable {
    private let rooms = Mutex<[String: [Int: RelayConnection]]>([:])
    private let connectionCount = Mutex(0)
    /// Open connections per client address and per account, for their limits.
    private let perAddress = Mutex<[String: Int]>([:])
    private let perAccount = Mutex<[String: Int]>([:])

    var openConnections: Int { connectionCount.withLock { $0 } }

    /// Counts a connection from `address` in, unless the address has `limit` open already.
    func admit(address: String, limit: Int) -> Bool {
        perAddress.withLock { counts in
            guard counts[address, default: 0] < limit else { return false }
            counts[address, default: 0] += 1
            return true
        }
    }

    func left(address: String) {
        perAddress.withLock { counts in
            counts[address, default: 1] -= 1
            if counts[address] == 0 { counts[address] = nil }
        }
    }

    /// Counts an authenticated connection of `userID` in, unless the account has `limit` open already.
    func opened(userID: String, limit: Int) -> Bool {
        let admitted = perAccount.withLock { counts in
            guard counts[userID, default: 0] < limit else { return false }
            counts[userID, default: 0] += 1
            return true
        }
        if admitted { connectionCount.withLock { $0 += 1 } }
        return admitted
    }

    func closed(_ connection: RelayConnection, rooms roomIDs: Set<String>) {
        connectionCount.withLock { $0 -= 1 }
        perAccount.withLock { counts in
            counts[connection.userID, default: 1] -= 1
            if counts[connection.userID] == 0 { counts[connection.userID] = nil }
        }
        rooms.withLock { rooms in
            for roomID in roomIDs {
                rooms[roomID]?[connection.id] = nil
                if rooms[roomID]?.isEmpty == true { rooms[roomID] = nil }
            }
        }
    }

    func subscribe(_ connection: RelayConnection, roomID: String) {
        rooms.withLock { $0[roomID, default: [:]][connection.id] = connection }
    }

    /// Sends `wires` (events of `roomID`, the most urgent of them of `priority`) to the room's readers, except
    /// `excluding` (the publisher, answered by its ack and its own copy).
    /// - Returns: how many event deliveries were queued.
    @discardableResult
    func deliver(roomID: String, wires: [[UInt8]], priority: MessagePriority = .normal, state: RoomState?, excluding: Int? = nil) -> Int {
        let subscribers = rooms.withLock { $0[roomID].map { Array($0.values) } ?? [] }
        guard !subscribers.isEmpty, let state else { return 0 }
        let bodies = Self.eventBodies(roomID: roomID, wires: wires)
        var delivered = 0
        for connection in subscribers where connection.id != excluding {
            guard RelayEvents.canRead(state, userID: connection.userID, deviceKey: connection.deviceKey) else { continue }
            if bodies.allSatisfy({ connection.queue.push(events: $0.body, count: $0.count, roomID: roomID, priority: priority) }) {
                delivered += wires.count
            }
        }
        return delivered
    }

    /// Sends a frame to the room's readers other than `excluding`.
    func broadcast(roomID: String, frame: String, state: RoomState?, excluding: Int) {
        let subscribers = rooms.withLock { $0[roomID].map { Array($0.values) } ?? [] }
        guard let state else { return }
        for connection in subscribers where connection.id != excluding {
            if RelayEvents.canRead(state, userID: connection.userID, deviceKey: connection.deviceKey) { connection.queue.push(frame) }
        }
    }

    /// `events` frames carrying `wires`, each within the frame bound.
    static func eventFrames(roomID: String, wires: [[UInt8]]) -> [String] {
        eventBodies(roomID: roomID, wires: wires).map { eventsFrame(roomID: roomID, body: $0.body) }
    }

    /// `wires` split into the bodies of `events` frames within the frame bound: each the wire forms joined by commas,
    /// spliced in as they are, since an event's wire form is its canonical JSON.
    static func eventBodies(roomID: String, wires: [[UInt8]]) -> [(body: [UInt8], count: Int)] {
        let overhead = eventsFrameOverhead(roomID: roomID)
        var bodies: [(body: [UInt8], count: Int)] = []
        var current: [UInt8] = []
        var count = 0
        for wire in wires {
            if count > 0, overhead + current.count + 1 + wire.count > RelayFrame.maxFrameBytes || count == RelayFrame.maxEvents {
                bodies.append((current, count))
                current = []
                count = 0
            }
            if count > 0 { current.append(UInt8(ascii: ",")) }
            current += wire
            count += 1
        }
        if count > 0 { bodies.append((current, count)) }
        return bodies
    }

    private static let eventsHead = Array("{\"events\":[".utf8)

    private static func eventsTail(roomID: String) -> [UInt8] {
        Array("],\"room_id\":".utf8) + CanonicalJSON.encode(.string(roomID)) + Array(",\"type\":\"events\"}".utf8)
    }

    /// The bytes of an `events` frame besides its events.
    static func eventsFrameOverhead(roomID: String) -> Int { eventsHead.count + eventsTail(roomID: roomID).count }

    /// The `events` frame of `roomID` with `body` (wire forms joined by commas).
    static func eventsFrame(roomID: String, body: [UInt8]) -> String {
        String(decoding: eventsHead + body + eventsTail(roomID: roomID), as: UTF8.self)
    }
}
