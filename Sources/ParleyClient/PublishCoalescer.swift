import Dispatch
import Synchronization

/// Group commit for single events published at once by several threads (a UI's sends through the local API): the
/// first caller for a room becomes its leader and publishes what has queued meanwhile as one burst — one lock, one
/// transaction, one fsync — while the others wait; then it hands leadership to the oldest caller still waiting and
/// returns. A burst is all or nothing, so when the room refuses it each event is published again on its own and gets
/// its own verdict. A lone caller (every one-shot command) publishes alone, as before.
final class PublishCoalescer: Sendable {
    /// Events taken into one burst at most.
    static let maxBurst = Node.shortBurst

    final class Ticket: @unchecked Sendable {
        let event: OutgoingEvent
        let woken = DispatchSemaphore(value: 0)
        /// Set before `woken` is signalled: either the outcome, or nil when this caller is the room's leader now.
        var outcome: Result<VerifiedEvent, any Error>?

        init(event: OutgoingEvent) { self.event = event }
    }

    struct Room {
        var waiting: [Ticket] = []
        var hasLeader = false
    }

    private let rooms = Mutex<[String: Room]>([:])

    /// Publishes `event` in `roomID`, together with others' events queued meanwhile.
    /// - Parameter publish: publishes a burst in the room, all or nothing (the node's `publish(roomID:_:)` itself).
    func publish(_ event: OutgoingEvent, roomID: String, with publish: ([OutgoingEvent]) throws -> [VerifiedEvent]) throws -> VerifiedEvent {
        let ticket = Ticket(event: event)
        let leads = rooms.withLock { rooms in
            rooms[roomID, default: Room()].waiting.append(ticket)
            guard !rooms[roomID]!.hasLeader else { return false }
            rooms[roomID]!.hasLeader = true
            return true
        }
        if !leads {
            ticket.woken.wait()
            if let outcome = ticket.outcome { return try outcome.get() }
            // Handed leadership: its own event is still queued.
        }
        let burst = rooms.withLock { rooms in
            let burst = Array(rooms[roomID]!.waiting.prefix(PublishCoalescer.maxBurst))
            rooms[roomID]!.waiting.removeFirst(burst.count)
            return burst
        }
        let outcomes = PublishCoalescer.outcomes(of: burst.map(\.event), with: publish)
        for (waiting, outcome) in zip(burst, outcomes) where waiting !== ticket {
            waiting.outcome = outcome
            waiting.woken.signal()
        }
        // The next burst is led by the oldest caller still waiting, so nobody's answer waits for bursts after its own.
        let next = rooms.withLock { rooms -> Ticket? in
            guard let first = rooms[roomID]?.waiting.first else {
                rooms[roomID] = nil
                return nil
            }
            return first
        }
        next?.woken.signal()
        return try outcomes[burst.firstIndex { $0 === ticket }!].get()
    }

    /// Each event's outcome: the burst's; when the room refuses one of its events, each event's own; when the store
    /// fails (a full disk), that failure for all of them.
    static func outcomes(of events: [OutgoingEvent], with publish: ([OutgoingEvent]) throws -> [VerifiedEvent]) -> [Result<VerifiedEvent, any Error>] {
        if events.count > 1 {
            do {
                return try publish(events).map { .success($0) }
            } catch {
                let code = ClientError(describing: error).code
                if [.io, .busy, .storeDamaged, .storeMissing, .internalError].contains(code) { return events.map { _ in .failure(error) } }
            }
        }
        return events.map { event in Result { try publish([event])[0] } }
    }
}
