/// Evidence that two different chained events carry one event id (docs/PROTOCOL.md §6.5).
///
/// Event ids are names, not identities: both events stay chained and are judged on their own, so a copied id can
/// neither block nor hide the event it copies. The pair is kept so users can be told that a device reused an id
/// (usually a device copying another's, to confuse clients that key on ids).
public struct EventIDCollision: Sendable, Equatable {
    public let eventID: String
    /// The two envelopes (wire form without content), in byte order, as in a ``ForkProof``.
    public let first: [UInt8]
    public let second: [UInt8]

    public init(_ a: Event, _ b: Event) {
        eventID = a.eventID
        let envelopes = [a.envelopeBytes(), b.envelopeBytes()].sorted { $0.lexicographicallyPrecedes($1) }
        first = envelopes[0]
        second = envelopes[1]
    }

    public init(eventID: String, first: [UInt8], second: [UInt8]) {
        self.eventID = eventID
        self.first = first
        self.second = second
    }

    /// The pair as JSON: `{"event_id": id, "first": envelope, "second": envelope}`.
    public func jsonValue() -> JSONValue {
        let parser = JSONParser()
        return .object(
            JSONObject([
                "event_id": .string(eventID), "first": (try? parser.parse(first)) ?? .null, "second": (try? parser.parse(second)) ?? .null,
            ]))
    }
}
