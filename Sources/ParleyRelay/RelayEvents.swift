import Dispatch
import ParleyCore
import ParleyStore
import ParleySync

/// The relay's events: a node's store (`EventStore`), so the relay judges every event with a node's rules — strict
/// verification, chains, forks kept as evidence, room authorization — and answers catch-up, heads and history from
/// it. Writes run one at a time on a queue of their own, never on an event loop.
public final class RelayEvents: Sendable {
    public let store: EventStore
    private let queue = DispatchQueue(label: "parley.relay.events")

    public init(store: EventStore) { self.store = store }

    /// Runs `work` on the store's queue.
    func onQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Who publishes: the account and its devices.
    struct Publisher: Sendable {
        var userID: String
        var deviceKey: String
        var devices: Set<String>
    }

    /// An event the relay holds.
    struct Kept: Sendable {
        var roomID: String
        var eventID: String
        var wire: [UInt8]
        /// What the event asks of transports (§7.6): fan-out writes the more urgent first to a client that lags.
        var priority: MessagePriority

        init(_ event: VerifiedEvent) {
            (roomID, eventID, wire) = (event.event.roomID, event.event.eventID, event.wire)
            priority = MessagePriority.of(type: event.event.type, content: event.event.content)
        }
    }

    /// What a publish did: a verdict per event; the events the relay now holds that its members should get (those
    /// just stored and those they released), in the order they were stored; and the published events it held already.
    struct Published: Sendable {
        var results: [RelayFrame.PublishResult]
        var stored: [Kept]
        var duplicates: [Kept] = []
    }

    /// Judges and stores published events.
    ///
    /// Each event must be the next link of its device's chain as the relay holds it (an older seq is answered by the
    /// store: a duplicate, or a fork kept as evidence): one whose predecessor the relay lacks is refused (`gap`), and
    /// so is one that does not link to it (`chain`), so that nothing waits on the relay for a predecessor that may
    /// never come. An event of a room the relay does not hold is refused unless it is the room's create (or comes
    /// after it in this call). An event signed by one of the publisher's devices must name the publisher as its
    /// sender. An event signed by another device is a copy of someone else's event, which members push to refill a
    /// relay that lost its data: it is genuine (signed), so it is taken like the device's own. An event of a device
    /// the room does not know yet that the room's current state refuses (a stranger's join, a non-member's message) is
    /// refused without being stored; anything else is handed to the store, which judges it as a node does (an event
    /// of a known device that the state does not authorize is kept as evidence), in one transaction per run.
    func publish(_ values: [JSONValue], by publisher: Publisher, nowMs: Int64) throws -> Published {
        let wires = values.map { CanonicalJSON.encode($0) }
        let verified = VerifiedEvent.verifyInParallel(wires)
        var results = [RelayFrame.PublishResult?](repeating: nil, count: values.count)
        var stored: [Kept] = []
        var duplicates: [Kept] = []
        var run: [(index: Int, event: VerifiedEvent)] = []
        // Chain heads as of the events taken so far in this call, ahead of the store until the run is stored.
        var runHeads: [ChainKey: ChainLink] = [:]
        // The rooms the run has events of, and those it has state events of.
        var runRooms: Set<String> = []
        var runStateRooms: Set<String> = []

        func flush() throws {
            guard !run.isEmpty else { return }
            let report = try store.ingest(events: run.map(\.event), receivedMs: nowMs)
            for (offset, item) in run.enumerated() {
                results[item.index] = Self.result(report.outcomes[offset], eventID: item.event.event.eventID)
                if report.outcomes[offset] == .duplicate { duplicates.append(Kept(item.event)) }
            }
            stored += try kept(run.map(\.event), report)
            run = []
            runHeads = [:]
            runRooms = []
            runStateRooms = []
        }

        for (index, outcome) in verified.enumerated() {
            let event: VerifiedEvent
            switch outcome {
            case .failure(let error):
                results[index] = .init(.rejected, eventID: values[index]["event_id"]?.stringValue, code: error.code.rawValue, reason: error.message)
                continue
            case .success(let verifiedEvent): event = verifiedEvent
            }
            let header = event.event
            func refuse(_ code: String, _ reason: String) { results[index] = .init(.rejected, eventID: header.eventID, code: code, reason: reason) }
            // A state event earlier in this run changes what the next one is judged against: store the run first.
            if runStateRooms.contains(header.roomID) { try flush() }
            let chain = ChainKey(roomID: header.roomID, senderKey: header.senderKey)
            let head = try runHeads[chain] ?? store.chainHead(roomID: header.roomID, senderKey: header.senderKey)
            let headSeq = head?.seq ?? 0
            if header.seq > headSeq + 1 {
                refuse("gap", "The relay holds this device's chain up to seq \(headSeq): publish seq \(headSeq + 1) first.")
                continue
            }
            let isNextLink = header.seq == headSeq + 1
            if isNextLink, let head, header.prevEventHash != head.hash || header.timestampMs < head.timestampMs {
                refuse("chain", "The event does not follow seq \(head.seq) of its device's chain as the relay holds it (§6.2).")
                continue
            }
            if let refusal = try refusal(
                of: event, by: publisher, isNextLink: isNextLink, pendingCreate: runRooms.contains(header.roomID))
            {
                results[index] = refusal
                continue
            }
            if isNextLink { runHeads[chain] = ChainLink(seq: header.seq, hash: event.hash, timestampMs: header.timestampMs) }
            run.append((index, event))
            runRooms.insert(header.roomID)
            if EventType.isState(header.type) { runStateRooms.insert(header.roomID) }
        }
        try flush()
        return Published(results: results.map { $0! }, stored: stored, duplicates: duplicates)
    }

    /// The events an ingest stored that members should get: those taken (as links of their chains, authorized or not)
    /// and those they released, in the order they were stored.
    private func kept(_ events: [VerifiedEvent], _ report: IngestReport) throws -> [Kept] {
        var kept: [Kept] = []
        for (offset, event) in events.enumerated() {
            switch report.outcomes[offset] {
            case .accepted, .unauthorized: kept.append(Kept(event))
            default: break
            }
        }
        for (eventID, outcome) in report.released where outcome == .accepted {
            if let event = try store.event(eventID: eventID) { kept.append(Kept(event.event)) }
        }
        return kept
    }

    /// Stores events of the deployment's shared log that this relay lacks (another relay took them, or this one did
    /// before it lost its store). They are verified and judged again, as any input: the database is not trusted more
    /// than a client.
    /// - Returns: the events now stored, in order, for the members connected here.
    func ingestShared(_ logged: [RelayDatabase.LoggedEvent], nowMs: Int64) throws -> [Kept] {
        // The relay's own events come back through the log: they are recognised by id before any signature is checked.
        let lacking = try logged.filter { try store.event(eventID: $0.eventID) == nil }
        let verified = VerifiedEvent.verifyInParallel(lacking.map(\.wire)).compactMap { try? $0.get() }
        guard !verified.isEmpty else { return [] }
        return try kept(verified, try store.ingest(events: verified, receivedMs: nowMs))
    }

    /// Why an event is refused before the store sees it, or `nil` to hand it over.
    private func refusal(of event: VerifiedEvent, by publisher: Publisher, isNextLink: Bool, pendingCreate: Bool) throws -> RelayFrame.PublishResult? {
        let header = event.event
        func refuse(_ code: String, _ reason: String) -> RelayFrame.PublishResult { .init(.rejected, eventID: header.eventID, code: code, reason: reason) }
        if publisher.devices.contains(header.senderKey), header.senderID != publisher.userID {
            return refuse("wrong_sender", "The event is signed by a device of \(publisher.userID) but names another sender.")
        }
        let state = try store.roomState(roomID: header.roomID)
        guard let state, state.creation != nil else {
            guard header.type == EventType.create || pendingCreate else {
                return refuse("unknown_room", "The relay holds no room \(header.roomID): publish its create event first.")
            }
            return nil
        }
        // A device the room knows has its place in the room's chains, even for what the room refuses (kept as
        // evidence, as a node keeps it); a device the room does not know gets nothing stored that the room refuses.
        if state.keyOwners[header.senderKey] == nil, isNextLink, case .rejected(let reason) = try store.preview(event) {
            return refuse("unauthorized", "The room does not allow this event: \(reason).")
        }
        return nil
    }

    struct ChainKey: Hashable {
        var roomID: String
        var senderKey: String
    }

    static func result(_ outcome: IngestOutcome, eventID: String) -> RelayFrame.PublishResult {
        switch outcome {
        case .accepted: .init(.stored, eventID: eventID)
        case .duplicate: .init(.duplicate, eventID: eventID)
        case .heldBack(let reason): .init(.held, eventID: eventID, reason: reason)
        case .unauthorized(let reason):
            .init(.stored, eventID: eventID, code: "unauthorized", reason: "Kept as a link of its device's chain, but the room does not allow it: \(reason).")
        case .rejected(let reason): .init(.rejected, eventID: eventID, code: "chain", reason: reason)
        }
    }

    /// Whether a device reads a room: its user is joined and the device is one the room bound to them, or its user is
    /// invited and the invite names the device (it needs the room's chains to join, as a bucket reader has them). A
    /// kicked or banned member's devices stop reading at the event that removed them.
    static func canRead(_ state: RoomState, userID: String, deviceKey: String) -> Bool {
        guard let member = state.members[userID] else { return false }
        switch member.membership {
        case .join: return member.devices[deviceKey] != nil
        case .invite: return member.invitedDevices[deviceKey] != nil
        case .leave, .ban: return false
        }
    }

    func canRead(roomID: String, userID: String, deviceKey: String) throws -> Bool {
        guard let state = try store.roomState(roomID: roomID) else { return false }
        return Self.canRead(state, userID: userID, deviceKey: deviceKey)
    }

    /// The room's founding events (its create and its creator's join): what a device needs to join the room.
    func founding(roomID: String) throws -> [[UInt8]] {
        guard let creation = try store.roomState(roomID: roomID)?.creation else { return [] }
        return try store.eventIDs(roomID: roomID, senderKey: creation.creatorKey, seqs: 1...2).compactMap { try store.event(eventID: $0)?.event.wire }
    }
}
