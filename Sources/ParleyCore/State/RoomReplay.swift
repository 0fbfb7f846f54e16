/// The authorization order of a room's events: by `timestamp_ms`, ties broken by event hash (docs/PROTOCOL.md §8.1).
public struct AuthorizationOrder: Sendable, Hashable, Comparable {
    public var timestampMs: Int64
    public var hash: String

    public init(timestampMs: Int64, hash: String) {
        self.timestampMs = timestampMs
        self.hash = hash
    }

    public init(_ event: VerifiedEvent) {
        self.init(timestampMs: event.event.timestampMs, hash: event.hash)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.timestampMs, lhs.hash) < (rhs.timestampMs, rhs.hash)
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
    /// Accepted, unredacted reactions: (sender, target, key) → the reaction's event id.
    var activeReactions: [ReactionKey: String] = [:]
    var reactionKeys: [String: ReactionKey] = [:]

    struct ReactionKey: Hashable {
        var sender: String
        var target: String
        var key: String
    }

    public init(roomID: String, events: [VerifiedEvent]) {
        state = RoomState(roomID: roomID)
        let ordered = events.sorted { AuthorizationOrder($0) < AuthorizationOrder($1) }
        var targets: [String: RelationTarget] = [:]
        for event in events { targets[event.event.eventID] = RelationTarget(type: event.event.type, senderID: event.event.senderID) }
        for event in ordered {
            let verdict = authorize(event, targets: targets)
            verdicts[event.hash] = verdict
        }
    }

    mutating func authorize(_ event: VerifiedEvent, targets: [String: RelationTarget]) -> Authorization {
        let content: EventContent?
        switch parsedContent(of: event) {
        case .success(let parsed): content = parsed
        case .failure(let error): return .rejected("invalid content: \(error)")
        }
        let lookup = Lookup(targets: targets, activeReactions: activeReactions)
        let verdict = state.authorize(event, content: content, relations: lookup)
        guard verdict == .accepted else { return verdict }
        switch content {
        case .reaction(let target, let key)?:
            let reactionKey = ReactionKey(sender: event.event.senderID, target: target, key: key)
            activeReactions[reactionKey] = event.event.eventID
            reactionKeys[event.event.eventID] = reactionKey
        case .redaction(let target, _)?:
            if let reactionKey = reactionKeys[target], activeReactions[reactionKey] == target {
                activeReactions[reactionKey] = nil
            }
        default: break
        }
        return verdict
    }

    struct Lookup: RelationLookup {
        let targets: [String: RelationTarget]
        let activeReactions: [ReactionKey: String]

        func target(_ eventID: String) -> RelationTarget? { targets[eventID] }
        func hasActiveReaction(sender: String, target: String, key: String) -> Bool {
            activeReactions[ReactionKey(sender: sender, target: target, key: key)] != nil
        }
    }
}
