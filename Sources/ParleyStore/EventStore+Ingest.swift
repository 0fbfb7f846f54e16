import Dispatch
import Foundation
import GRDB
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
    /// Each input's event hash, when it parsed as an event.
    public var hashes: [String?] = []
    /// Events held back earlier that this call released, by event id, with their outcome.
    public var released: [(eventID: String, outcome: IngestOutcome)] = []
}

extension EventStore {
    /// Verifies many wire-form events on every core at once (parsing, content hash, strict signature).
    public static func verifyInParallel(_ lines: [[UInt8]]) -> [Result<VerifiedEvent, EventError>] {
        let results = UnsafeMutableBufferPointer<Result<VerifiedEvent, EventError>?>.allocate(capacity: lines.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        let shared = SendableBuffer(results)
        let chunk = 64
        let chunks = (lines.count + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { index in
            for position in index * chunk..<min(lines.count, (index + 1) * chunk) {
                do throws(EventError) {
                    shared.buffer[position] = .success(try VerifiedEvent(parsing: lines[position]))
                } catch {
                    shared.buffer[position] = .failure(error)
                }
            }
        }
        return results.map { $0! }
    }

    /// Verifies and stores wire-form events in one transaction.
    /// - Parameter receivedMs: the local time, recorded with held-back and rejected events.
    /// - Returns: an outcome per line; everything reported accepted, unauthorized or held back is committed.
    public func ingest(lines: [[UInt8]], receivedMs: Int64) throws -> IngestReport {
        try ingest(verified: EventStore.verifyInParallel(lines), lines: lines, receivedMs: receivedMs)
    }

    /// Stores events already verified (for example, signed by this node), in one transaction.
    public func ingest(events: [VerifiedEvent], receivedMs: Int64) throws -> IngestReport {
        try ingest(verified: events.map { .success($0) }, lines: events.map(\.wire), receivedMs: receivedMs)
    }

    /// Stores events verified with ``verifyInParallel(_:)``, in one transaction; `lines` are the inputs they came
    /// from (logged with rejections). Lets a caller verify the next batch while this one is written.
    public func ingest(verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]], receivedMs: Int64) throws -> IngestReport {
        var stripped = false
        let report = try pool.write { db in
            var batch = IngestBatch(db: db, store: self, receivedMs: receivedMs)
            var outcomes: [IngestOutcome?] = Array(repeating: nil, count: verified.count)
            var chainedInputs: [(index: Int, hash: String)] = []
            for (index, result) in verified.enumerated() {
                switch result {
                case .failure(let error):
                    try batch.logRejection(reason: error.message, event: nil, excerpt: lines[index])
                    outcomes[index] = .rejected(error.message)
                case .success(let event):
                    let outcome = try batch.chain(event, releasing: true)
                    if outcome == nil { chainedInputs.append((index, event.hash)) } else { outcomes[index] = outcome }
                }
            }
            try batch.authorizeChained()
            if batch.strippedContent {
                // FTS5 keeps deleted terms in older index segments until they merge; merge now so redacted text
                // is gone from the file, not just from query results.
                try db.execute(sql: "INSERT INTO message_search (message_search) VALUES ('optimize')")
                stripped = true
            }
            for (index, hash) in chainedInputs { outcomes[index] = batch.finalOutcome(hash: hash) }
            let inputHashes = Set(chainedInputs.map(\.hash))
            let released = (batch.chainedOrder + batch.rejudged).filter { !inputHashes.contains($0.hash) }.map {
                (eventID: $0.event.eventID, outcome: batch.finalOutcome(hash: $0.hash))
            }
            let hashes = verified.map { try? $0.get().hash }
            return IngestReport(outcomes: outcomes.map { $0! }, hashes: hashes, released: released)
        }
        if stripped {
            // The write-ahead log still holds the pages as they were before stripping; fold it into the main file
            // (where secure_delete zeroed them) and truncate it. Busy readers only postpone this to a later batch.
            try? pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        }
        return report
    }
}

/// Lets the parallel verifier write results into disjoint slots of one buffer.
struct SendableBuffer<Element>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<Element>
    init(_ buffer: UnsafeMutableBufferPointer<Element>) { self.buffer = buffer }
}

/// The work of one ingest transaction: chain each event, then authorize the chained ones room by room.
struct IngestBatch {
    let db: Database
    let store: EventStore
    let receivedMs: Int64
    /// Events chained in this batch, in the order they were chained.
    var chainedOrder: [VerifiedEvent] = []
    /// Final verdicts of this batch's chained events, by hash.
    var verdicts: [String: Authorization] = [:]
    var forkedAt: [ChainID: Int64?] = [:]
    var strippedContent = false
    /// Events stored earlier as waiting for a target that this batch brought, judged again.
    var rejudged: [VerifiedEvent] = []

    init(db: Database, store: EventStore, receivedMs: Int64) {
        self.db = db
        self.store = store
        self.receivedMs = receivedMs
    }

    func finalOutcome(hash: String) -> IngestOutcome {
        switch verdicts[hash] {
        case .accepted?: .accepted
        case .rejected(let reason)?: .unauthorized(reason)
        case .awaitingTarget(let target)?: .heldBack("waiting for the event it refers to, \(target)")
        case nil: .accepted
        }
    }

    mutating func logRejection(reason: String, event: Event?, excerpt: [UInt8]) throws {
        try db.cachedStatement(sql: """
            INSERT INTO rejected_events (received_ms, room_id, event_id, hash, reason, excerpt) VALUES (?, ?, ?, ?, ?, ?)
            """).execute(arguments: [receivedMs, event?.roomID, event?.eventID, nil as String?, reason, Data(excerpt.prefix(4096))])
    }

    mutating func forkSeq(_ chain: ChainID) throws -> Int64? {
        if let known = forkedAt[chain] { return known }
        let seq = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT MIN(seq) FROM forks WHERE room_id = ? AND sender_key = ?"),
            arguments: [chain.roomID, chain.senderKey])
        forkedAt[chain] = .some(seq)
        return seq
    }

    func link(_ chain: ChainID, seq: Int64) throws -> ChainLink? {
        guard seq >= 1 else { return nil }
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT hash, timestamp_ms FROM events WHERE room_id = ? AND sender_key = ? AND seq = ?"),
            arguments: [chain.roomID, chain.senderKey, seq])
        return row.map { ChainLink(seq: seq, hash: $0[0], timestampMs: $0[1]) }
    }

    /// Puts `event` through the chain rules. Returns `nil` when it was chained (its final outcome comes from
    /// authorization), otherwise its outcome.
    mutating func chain(_ event: VerifiedEvent, releasing: Bool) throws -> IngestOutcome? {
        let envelope = event.event
        let chain = ChainID(envelope)
        let existing = try link(chain, seq: envelope.seq)
        if existing == nil,
            let known = try String.fetchOne(db.cachedStatement(sql: "SELECT hash FROM events WHERE event_id = ?"), arguments: [envelope.eventID]),
            known != event.hash
        {
            let reason = "event id \(envelope.eventID) already names a different event"
            try logRejection(reason: reason, event: envelope, excerpt: event.wire)
            return .rejected(reason)
        }
        let verdict = ChainRules.judge(
            event, atSameSeq: existing, predecessor: try link(chain, seq: envelope.seq - 1), forkedAt: try forkSeq(chain))
        switch verdict {
        case .extends:
            try insert(event)
            chainedOrder.append(event)
            if releasing { try releasePending(after: event) }
            return nil
        case .duplicate:
            return .duplicate
        case .awaitingPredecessor(let seq):
            let inserted = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO pending_events (hash, room_id, sender_key, waiting_for_seq, received_ms, wire)
                VALUES (?, ?, ?, ?, ?, ?)
                """)
            try inserted.execute(arguments: [event.hash, chain.roomID, chain.senderKey, seq, receivedMs, Data(event.wire)])
            if db.changesCount == 0 { return .duplicate }
            return .heldBack("waiting for seq \(seq) of device \(envelope.senderKey.prefix(12))… (a gap in its chain)")
        case .fork(let existingHash):
            let original = try Data.fetchOne(db.cachedStatement(sql: "SELECT wire FROM events WHERE hash = ?"), arguments: [existingHash])
            let proof = ForkProof(try VerifiedEvent(storedWire: original?.bytes ?? []), event)
            try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO forks (room_id, sender_key, seq, first, second, detected_ms) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [chain.roomID, chain.senderKey, envelope.seq, Data(proof.first), Data(proof.second), receivedMs])
            forkedAt[chain] = .some(min(try forkSeq(chain) ?? envelope.seq, envelope.seq))
            let reason = "fork: device \(envelope.senderKey.prefix(12))… of \(envelope.senderID) signed two different events at seq \(envelope.seq); proof kept, its later events refused"
            try logRejection(reason: reason, event: envelope, excerpt: event.wire)
            return .rejected(reason)
        case .rejected(let fault):
            try logRejection(reason: fault.description, event: envelope, excerpt: event.wire)
            return .rejected(fault.description)
        }
    }

    /// Chains events that were waiting for `event`, and those waiting for them in turn.
    mutating func releasePending(after event: VerifiedEvent) throws {
        var queue = [event]
        while let next = queue.popLast() {
            let rows = try Row.fetchAll(
                db.cachedStatement(sql: "SELECT hash, wire FROM pending_events WHERE room_id = ? AND sender_key = ? AND waiting_for_seq = ?"),
                arguments: [next.event.roomID, next.event.senderKey, next.event.seq])
            for row in rows {
                try db.cachedStatement(sql: "DELETE FROM pending_events WHERE hash = ?").execute(arguments: [row[0] as String])
                let waiting = try VerifiedEvent(storedWire: (row[1] as Data).bytes)
                if try chain(waiting, releasing: false) == nil { queue.append(waiting) }
            }
        }
    }

    func insert(_ event: VerifiedEvent) throws {
        let envelope = event.event
        var target: String?
        var relationKey: String?
        if let content = envelope.content {
            switch try? EventContent.parse(type: envelope.type, content: content, roomID: envelope.roomID) {
            case .edit(let id, _)?, .redaction(let id, _)?: target = id
            case .reaction(let id, let key)?: target = id; relationKey = key
            case .receipt(let kind, let id)?: target = id; relationKey = kind.rawValue
            default: break
            }
        }
        try db.cachedStatement(sql: """
            INSERT INTO events (hash, event_id, room_id, sender_id, sender_key, seq, timestamp_ms, type, parent_event_id,
                target_event_id, relation_key, status, wire)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, -1, ?)
            """).execute(arguments: [
                event.hash, envelope.eventID, envelope.roomID, envelope.senderID, envelope.senderKey, envelope.seq,
                envelope.timestampMs, envelope.type, envelope.parentEventID, target, relationKey, Data(event.wire),
            ])
    }

    /// Authorizes this batch's chained events, room by room, in event order; falls back to re-authorizing a room
    /// from the earliest new event when one arrives older than what the room has already authorized.
    mutating func authorizeChained() throws {
        var byRoom: [String: [VerifiedEvent]] = [:]
        for event in chainedOrder { byRoom[event.event.roomID, default: []].append(event) }
        for (roomID, events) in byRoom.sorted(by: { $0.key < $1.key }) {
            var authorizer = try RoomAuthorizer(db: db, store: store, roomID: roomID)
            var pendingEvents = events
            var seen = Set(events.map(\.hash))
            // Events that waited for one of these as their target are judged again with them.
            var frontier = events.map(\.event.eventID)
            while !frontier.isEmpty {
                let waiting = try authorizer.eventsAwaiting(targets: frontier).filter { seen.insert($0.hash).inserted }
                pendingEvents += waiting
                rejudged += waiting
                frontier = waiting.map(\.event.eventID)
            }
            let results = try authorizer.authorize(pendingEvents)
            verdicts.merge(results) { _, new in new }
            try authorizer.finish()
            if authorizer.strippedContent { strippedContent = true }
        }
    }
}
