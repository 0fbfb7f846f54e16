import Dispatch
import ParleyCore

/// What became of one event offered to the store.
public enum IngestOutcome: Sendable, Equatable {
    /// Stored, and authorized by the room's state.
    case accepted
    /// The identical event was already stored (or held back): nothing changed.
    case duplicate
    /// Stored as a valid, chained event that room state does not allow, with the reason. Kept as evidence.
    case unauthorized(String)
    /// Held back until an event it depends on arrives: its device's previous event, or the event it refers to.
    case heldBack(String)
    /// Not stored, with the reason: malformed, forged, altered, breaking its chain, or equivocating.
    case rejected(String)

    public var isAccepted: Bool { self == .accepted || self == .duplicate }
}

/// The outcome of one ingest call.
public struct IngestReport: Sendable {
    /// One outcome per input, in input order.
    public var outcomes: [IngestOutcome]
    /// Each input's event id and hash, when it parsed as an event.
    public var events: [(eventID: String, hash: String, senderKey: String, timestampMs: Int64)?] = []
    /// Events held back earlier that this call released, by event id, with their outcome.
    public var released: [(eventID: String, outcome: IngestOutcome)] = []
    /// Events stored although an event of another device already carried their event id (docs/PROTOCOL.md §6.5):
    /// both are kept and judged on their own, and the pair is kept as evidence. Their id and hash.
    public var collisions: [(eventID: String, hash: String)] = []

    public init(
        outcomes: [IngestOutcome], events: [(eventID: String, hash: String, senderKey: String, timestampMs: Int64)?] = [],
        released: [(eventID: String, outcome: IngestOutcome)] = [], collisions: [(eventID: String, hash: String)] = []
    ) {
        self.outcomes = outcomes
        self.events = events
        self.released = released
        self.collisions = collisions
    }

    /// One problem per collision for a user, with the index of the input it was, when it was one of this call's.
    public func collisionProblems() -> [(input: Int?, message: String)] {
        collisions.map { collision in
            (
                events.firstIndex { $0?.hash == collision.hash },
                "event id \(collision.eventID) is also carried by another device's event; both are kept (a device copied an id)"
            )
        }
    }
}

extension VerifiedEvent {
    /// Verifies many wire-form events on every core at once (parsing, content hash, strict signature).
    public static func verifyInParallel(_ lines: [[UInt8]]) -> [Result<VerifiedEvent, EventError>] {
        // Each result is written once, straight into the array's storage: copying results out of a scratch buffer
        // retained every string of every event once more.
        Array(unsafeUninitializedCapacity: lines.count) { storage, initialized in
            let shared = SendableBuffer(storage)
            let chunk = 64
            let chunks = (lines.count + chunk - 1) / chunk
            DispatchQueue.concurrentPerform(iterations: chunks) { index in
                for position in index * chunk..<min(lines.count, (index + 1) * chunk) {
                    let result: Result<VerifiedEvent, EventError>
                    do throws(EventError) {
                        result = .success(try VerifiedEvent(parsing: lines[position]))
                    } catch {
                        result = .failure(error)
                    }
                    (shared.buffer.baseAddress! + position).initialize(to: result)
                }
            }
            initialized = lines.count
        }
    }
}

/// Lets parallel work write results into disjoint slots of one buffer.
public struct SendableBuffer<Element>: @unchecked Sendable {
    public let buffer: UnsafeMutableBufferPointer<Element>
    public init(_ buffer: UnsafeMutableBufferPointer<Element>) { self.buffer = buffer }
}
