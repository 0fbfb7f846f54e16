/// The one total order of a room's events (docs/PROTOCOL.md §8.1), used both to authorize and to display them:
/// by `timestamp_ms`, then `seq` (so one device's events keep their chain order when they share a millisecond),
/// then `event_id` bytes, then `sender_key` bytes. Event ids are names, not identities (§6.5): two devices' events
/// may share one, and the sender key, which with `seq` identifies a chained event, keeps the order total.
public struct EventOrder: Sendable, Hashable, Comparable {
    public var timestampMs: Int64
    public var seq: Int64
    public var eventID: String
    public var senderKey: String

    public init(timestampMs: Int64, seq: Int64, eventID: String, senderKey: String) {
        self.timestampMs = timestampMs
        self.seq = seq
        self.eventID = eventID
        self.senderKey = senderKey
    }

    public init(_ event: Event) {
        self.init(timestampMs: event.timestampMs, seq: event.seq, eventID: event.eventID, senderKey: event.senderKey)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        if lhs.timestampMs != rhs.timestampMs { return lhs.timestampMs < rhs.timestampMs }
        if lhs.seq != rhs.seq { return lhs.seq < rhs.seq }
        let byID = JSONObject.compareUTF8(lhs.eventID, rhs.eventID)
        if byID != 0 { return byID < 0 }
        return JSONObject.compareUTF8(lhs.senderKey, rhs.senderKey) < 0
    }
}

/// Parses an event's content for authorization: `nil` content stays `nil`, invalid content is a rejection.
public func parsedContent(of event: VerifiedEvent) -> Result<EventContent?, ContentError> {
    guard let content = event.event.content else { return .success(nil) }
    do {
        return .success(try EventContent.parse(type: event.event.type, content: content, roomID: event.event.roomID))
    } catch {
        return .failure(error)
    }
}

/// Replays a whole set of chained events of one room and authorizes each against the state before it.
///
/// This is the definition of room state: the result depends only on the set of events, never on the order they
/// arrived in. Stores that work incrementally must agree with it (the tests check that they do).
public struct RoomReplay: Sendable {
    public private(set) var state: RoomState
    public private(set) var verdicts: [String: Authorization] = [:]
    /// Every chained event by id, and what each accepted redaction hides: what the timeline needs (§8.5, §9).
    public private(set) var relations: Lookup

    public init(roomID: String, events: [VerifiedEvent], pinnedCreateHash: String? = nil) {
        state = RoomState(roomID: roomID, pinnedCreateHash: pinnedCreateHash)
        let ordered = events.sorted { EventOrder($0.event) < EventOrder($1.event) }
        relations = Lookup(events: events)
        for event in ordered {
            let verdict = authorize(event)
            verdicts[event.hash] = verdict
        }
    }

    mutating func authorize(_ event: VerifiedEvent) -> Authorization {
        switch parsedContent(of: event) {
        case .success(let content):
            let verdict = state.authorize(event, content: content, relations: relations)
            if verdict == .accepted, case .redaction(let target, _)? = content {
                relations.scopes[ChainPosition(event.event)] = state.redactionScope(of: event.event, candidates: relations.targets(target))
            }
            return verdict
        case .failure(let error):
            return .rejected("invalid content: \(error)")
        }
    }

    /// Every chained event of the set, by event id: a relation's candidates (§8.5); and what each accepted redaction
    /// hides, once the replay has judged it.
    public struct Lookup: RelationLookup, Sendable {
        let targets: [String: [RelationTarget]]
        var scopes: [ChainPosition: RedactionScope] = [:]

        public init(events: [VerifiedEvent]) {
            var targets: [String: [RelationTarget]] = [:]
            for event in events { targets[event.event.eventID, default: []].append(RelationTarget(event.event)) }
            self.targets = targets
        }

        public func targets(_ eventID: String) -> [RelationTarget] { targets[eventID] ?? [] }

        public func redactionScope(of redaction: Event) -> RedactionScope? { scopes[ChainPosition(redaction)] }
    }
}
