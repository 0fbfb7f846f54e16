/// The one total order of a room's events (docs/PROTOCOL.md §8.1), used both to authorize and to display them:
/// by `timestamp_ms`, then `seq` (so one device's events keep their chain order when they share a millisecond),
/// then `event_id` bytes.
public struct EventOrder: Sendable, Hashable, Comparable {
    public var timestampMs: Int64
    public var seq: Int64
    public var eventID: String

    public init(timestampMs: Int64, seq: Int64, eventID: String) {
        self.timestampMs = timestampMs
        self.seq = seq
        self.eventID = eventID
    }

    public init(_ event: Event) {
        self.init(timestampMs: event.timestampMs, seq: event.seq, eventID: event.eventID)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        if lhs.timestampMs != rhs.timestampMs { return lhs.timestampMs < rhs.timestampMs }
        if lhs.seq != rhs.seq { return lhs.seq < rhs.seq }
        return JSONObject.compareUTF8(lhs.eventID, rhs.eventID) < 0
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

    public init(roomID: String, events: [VerifiedEvent], pinnedCreateHash: String? = nil) {
        state = RoomState(roomID: roomID, pinnedCreateHash: pinnedCreateHash)
        let ordered = events.sorted { EventOrder($0.event) < EventOrder($1.event) }
        var targets: [String: RelationTarget] = [:]
        for event in events { targets[event.event.eventID] = RelationTarget(type: event.event.type, senderID: event.event.senderID) }
        for event in ordered {
            let verdict = authorize(event, targets: targets)
            verdicts[event.hash] = verdict
        }
    }

    mutating func authorize(_ event: VerifiedEvent, targets: [String: RelationTarget]) -> Authorization {
        switch parsedContent(of: event) {
        case .success(let content): state.authorize(event, content: content, relations: Lookup(targets: targets))
        case .failure(let error): .rejected("invalid content: \(error)")
        }
    }

    struct Lookup: RelationLookup {
        let targets: [String: RelationTarget]
        func target(_ eventID: String) -> RelationTarget? { targets[eventID] }
    }
}
