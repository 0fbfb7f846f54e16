/// What a chain needs to know of an event already held: its position, hash and time.
public struct ChainLink: Sendable, Equatable, Hashable {
    public var seq: Int64
    public var hash: String
    public var timestampMs: Int64

    public init(seq: Int64, hash: String, timestampMs: Int64) {
        self.seq = seq
        self.hash = hash
        self.timestampMs = timestampMs
    }

    public init(_ event: VerifiedEvent) {
        self.init(seq: event.event.seq, hash: event.hash, timestampMs: event.event.timestampMs)
    }
}

/// A chain rule an event breaks (docs/PROTOCOL.md §6). Events that break one are not part of any chain.
public enum ChainFault: Error, Sendable, Equatable, CustomStringConvertible {
    /// `prev_event_hash` does not name the hash of the device's event at `seq − 1`.
    case previousHashMismatch(seq: Int64, expected: String, found: String)
    /// The timestamp is earlier than that of the device's previous event.
    case timestampWentBack(seq: Int64, previous: Int64, found: Int64)
    /// The device has already equivocated; none of its further events are accepted.
    case deviceForked(forkSeq: Int64)

    public var description: String {
        switch self {
        case .previousHashMismatch(let seq, let expected, let found):
            "prev_event_hash \(found.prefix(16))… at seq \(seq) does not match the hash \(expected.prefix(16))… of this device's seq \(seq - 1)"
        case .timestampWentBack(let seq, let previous, let found):
            "timestamp_ms \(found) at seq \(seq) is earlier than \(previous) at seq \(seq - 1) of the same device"
        case .deviceForked(let forkSeq):
            "this device signed two different events at seq \(forkSeq) (a fork); its later events are refused"
        }
    }
}

/// Where an event stands against its device's chain.
public enum ChainVerdict: Sendable, Equatable {
    /// It extends the chain: its predecessor is held (or it is seq 1) and every rule holds.
    case extends
    /// The identical event (same hash) is already held.
    case duplicate
    /// Its predecessor at `seq − 1` is not held yet: hold it back until that arrives (a gap).
    case awaitingPredecessor(seq: Int64)
    /// Another event with the same device and seq is held: an equivocation, proven by the two envelopes.
    case fork(existingHash: String)
    case rejected(ChainFault)
}

/// The per-device hash-chain rules, as a pure function of what the caller holds.
public enum ChainRules {
    /// Judges `event` given the device's held event at the same seq, its predecessor, and whether the device is
    /// already known to have forked (and at which seq).
    public static func judge(
        _ event: VerifiedEvent, atSameSeq existing: ChainLink?, predecessor: ChainLink?, forkedAt: Int64?
    ) -> ChainVerdict {
        if let existing {
            return existing.hash == event.hash ? .duplicate : .fork(existingHash: existing.hash)
        }
        if let forkedAt { return .rejected(.deviceForked(forkSeq: forkedAt)) }
        let seq = event.event.seq
        guard seq > 1 else { return .extends }
        guard let predecessor else { return .awaitingPredecessor(seq: seq - 1) }
        precondition(predecessor.seq == seq - 1, "caller passed the wrong predecessor")
        let found = event.event.prevEventHash ?? ""
        guard found == predecessor.hash else {
            return .rejected(.previousHashMismatch(seq: seq, expected: predecessor.hash, found: found))
        }
        guard event.event.timestampMs >= predecessor.timestampMs else {
            return .rejected(.timestampWentBack(seq: seq, previous: predecessor.timestampMs, found: event.event.timestampMs))
        }
        return .extends
    }
}

/// Evidence that one device signed two different events at the same position of its chain in a room.
///
/// Anyone can check it with ``verify()``: both envelopes verify under the same key, name the same room and seq,
/// and differ.
public struct ForkProof: Sendable, Equatable {
    /// The two envelopes (wire form without content), in byte order so the proof itself is canonical.
    public let first: [UInt8]
    public let second: [UInt8]

    public init(_ a: VerifiedEvent, _ b: VerifiedEvent) {
        let envelopes = [a.event.envelopeBytes(), b.event.envelopeBytes()].sorted { $0.lexicographicallyPrecedes($1) }
        first = envelopes[0]
        second = envelopes[1]
    }

    public init(first: [UInt8], second: [UInt8]) {
        self.first = first
        self.second = second
    }

    public enum Invalid: Error, Sendable, Equatable {
        case envelope(EventError)
        case notAFork(String)
    }

    /// Checks the proof and returns the device key, room and seq it convicts.
    public func verify() throws(Invalid) -> (senderKey: String, roomID: String, seq: Int64) {
        let a: VerifiedEvent
        let b: VerifiedEvent
        do {
            a = try VerifiedEvent(parsing: first)
            b = try VerifiedEvent(parsing: second)
        } catch { throw .envelope(error) }
        guard a.event.senderKey == b.event.senderKey else { throw .notAFork("the events have different signing keys") }
        guard a.event.roomID == b.event.roomID else { throw .notAFork("the events are in different rooms") }
        guard a.event.seq == b.event.seq else { throw .notAFork("the events are at different seqs") }
        guard a.hash != b.hash else { throw .notAFork("the events are identical") }
        return (a.event.senderKey, a.event.roomID, a.event.seq)
    }

    /// The proof as JSON: `{"first": envelope, "second": envelope}`, each envelope a JSON object.
    public func jsonValue() -> JSONValue {
        // Envelopes are canonical JSON we produced; they parse.
        let parser = JSONParser()
        return .object(JSONObject(["first": (try? parser.parse(first)) ?? .null, "second": (try? parser.parse(second)) ?? .null]))
    }
}
