/// A chain: one device's events in one room.
public struct ChainID: Sendable, Hashable {
    public var roomID: String
    public var senderKey: String

    public init(roomID: String, senderKey: String) {
        self.roomID = roomID
        self.senderKey = senderKey
    }

    public init(_ event: Event) {
        self.init(roomID: event.roomID, senderKey: event.senderKey)
    }
}

/// What became of one event offered to a ``Ledger`` or a store.
public enum LedgerOutcome: Sendable, Equatable {
    /// It extends its chain; room authorization decides the rest.
    case chained
    /// The identical event was already held.
    case duplicate
    /// Held back until its device's event at `seq` arrives.
    case awaitingPredecessor(seq: Int64)
    /// Its device signed another event at the same seq; kept only as evidence.
    case fork(ForkProof)
    /// Refused, with the reason.
    case rejected(String)
}

/// An in-memory, order-independent verifier of any set of events: chains, gaps, forks and room state.
///
/// `parley verify` audits files with it, and the tests use it as the reference the persistent store must match.
public struct Ledger: Sendable {
    struct DeviceChain {
        var links: [Int64: ChainLink] = [:]
        var forkedAt: Int64?
    }

    var chains: [ChainID: DeviceChain] = [:]
    /// Events held back for a missing predecessor, by chain and the seq they wait for.
    var pending: [ChainID: [Int64: [VerifiedEvent]]] = [:]
    /// The first chained event with each event id, to notice ids that several events carry.
    var firstByEventID: [String: Event] = [:]
    /// Chained events by room, in arrival order.
    public private(set) var rooms: [String: [VerifiedEvent]] = [:]
    public private(set) var forks: [ForkProof] = []
    /// Chained events that carry an event id an earlier chained event already had: kept, and reported.
    public private(set) var collisions: [EventIDCollision] = []

    public init() {}

    /// Offers one verified event; returns its outcome and those of any held-back events it released.
    public mutating func ingest(_ event: VerifiedEvent) -> [(VerifiedEvent, LedgerOutcome)] {
        var results: [(VerifiedEvent, LedgerOutcome)] = []
        var queue = [event]
        while let next = queue.popLast() {
            let outcome = judge(next)
            results.append((next, outcome))
            guard outcome == .chained else { continue }
            let chain = ChainID(next.event)
            if let released = pending[chain]?.removeValue(forKey: next.event.seq) { queue.append(contentsOf: released) }
        }
        return results
    }

    mutating func judge(_ event: VerifiedEvent) -> LedgerOutcome {
        let envelope = event.event
        let chain = ChainID(envelope)
        var device = chains[chain] ?? DeviceChain()
        let existing = device.links[envelope.seq]
        let verdict = ChainRules.judge(
            event, atSameSeq: existing, predecessor: device.links[envelope.seq - 1], forkedAt: device.forkedAt)
        switch verdict {
        case .extends:
            device.links[envelope.seq] = ChainLink(event)
            chains[chain] = device
            if let earlier = firstByEventID[envelope.eventID] {
                collisions.append(EventIDCollision(earlier, envelope))
            } else {
                firstByEventID[envelope.eventID] = envelope
            }
            rooms[envelope.roomID, default: []].append(event)
            return .chained
        case .duplicate:
            return .duplicate
        case .awaitingPredecessor(let seq):
            if pending[chain, default: [:]][seq, default: []].contains(where: { $0.hash == event.hash }) { return .duplicate }
            pending[chain, default: [:]][seq, default: []].append(event)
            return .awaitingPredecessor(seq: seq)
        case .fork:
            let original = rooms[envelope.roomID, default: []].first { ChainID($0.event) == chain && $0.event.seq == envelope.seq }
            // The held event at this seq is always in `rooms`: links are only added together with it.
            let proof = ForkProof(original!, event)
            if !forks.contains(proof) { forks.append(proof) }
            device.forkedAt = min(device.forkedAt ?? envelope.seq, envelope.seq)
            chains[chain] = device
            return .fork(proof)
        case .rejected(let fault):
            return .rejected(fault.description)
        }
    }

    /// Events still waiting for a predecessor, with the seq each waits for.
    public var heldBack: [(VerifiedEvent, waitingFor: Int64)] {
        pending.values.flatMap { bySeq in bySeq.flatMap { seq, events in events.map { ($0, seq) } } }
    }

    /// Authorizes every chained event of `roomID`.
    public func replay(roomID: String) -> RoomReplay {
        RoomReplay(roomID: roomID, events: rooms[roomID] ?? [])
    }
}
