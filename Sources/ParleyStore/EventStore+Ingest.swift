import Foundation
import GRDB
import GRDBSQLite
import ParleyCore
import ParleySync

extension EventStore {
    /// Verifies and stores wire-form events in one transaction.
    /// - Parameter receivedMs: the local time, recorded with held-back and rejected events.
    /// - Returns: an outcome per line; everything reported accepted, unauthorized or held back is committed.
    public func ingest(lines: [[UInt8]], receivedMs: Int64) throws -> IngestReport {
        try ingest(verified: VerifiedEvent.verifyInParallel(lines), lines: lines, receivedMs: receivedMs)
    }

    /// Stores events already verified (for example, signed by this node), in one transaction.
    /// - Parameter requireAccepted: store nothing, and throw, unless every event is accepted — for a node's own
    ///   events, so a refused one never takes a place in its chain.
    public func ingest(events: [VerifiedEvent], receivedMs: Int64, requireAccepted: Bool = false) throws -> IngestReport {
        try ingest(verified: events.map { .success($0) }, lines: events.map(\.wire), receivedMs: receivedMs, requireAccepted: requireAccepted)
    }

    /// Stores events verified with ``VerifiedEvent/verifyInParallel(_:)``, in one transaction; `lines` are the inputs they came
    /// from (logged with rejections). Lets a caller verify the next batch while this one is written.
    public func ingest(
        verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]], receivedMs: Int64, requireAccepted: Bool = false
    ) throws -> IngestReport {
        var handedOver = false
        return try ingest(
            chunks: {
                defer { handedOver = true }
                return handedOver ? nil : (verified, lines)
            }, receivedMs: receivedMs, requireAccepted: requireAccepted)
    }

    /// Stores events that `next` hands over chunk by chunk (`nil`: no more), all in one transaction, so that the
    /// caller can prepare (sign, verify) the next chunk while this one is written. Outcomes are in hand-over order.
    public func ingest(
        chunks next: () throws -> (verified: [Result<VerifiedEvent, EventError>], lines: [[UInt8]])?, receivedMs: Int64,
        requireAccepted: Bool = false
    ) throws -> IngestReport {
        var stripped = false
        var states: [(roomID: String, state: RoomState, version: Int64)] = []
        let report = try pool.write { db in
            var batch = try IngestBatch(db: db, store: self, receivedMs: receivedMs)
            var outcomes: [IngestOutcome?] = []
            var events: [(eventID: String, hash: String, senderKey: String, timestampMs: Int64)?] = []
            var chainedInputs: [(index: Int, hash: String)] = []
            while let (verified, lines) = try next() {
                // Grown once per chunk instead of doubling along the way, which rehashes every 64-character key.
                batch.verdicts.reserveCapacity(batch.verdicts.count + verified.count)
                for (offset, result) in verified.enumerated() {
                    let index = outcomes.count
                    switch result {
                    case .failure(let error):
                        try batch.logRejection(reason: error.message, event: nil, excerpt: lines[offset])
                        outcomes.append(.rejected(error.message))
                        events.append(nil)
                    case .success(let event):
                        let outcome = try batch.offer(event)
                        outcomes.append(outcome)
                        if outcome == nil { chainedInputs.append((index, event.hash)) }
                        events.append((event.event.eventID, event.hash, event.event.senderKey, event.event.timestampMs))
                    }
                }
            }
            try batch.finish()
            states = batch.finishedStates
            // Sealed events this node holds the key for are opened in the same transaction: no second commit.
            // Keys sealed to this device, and the sealed events they or earlier keys open, are opened in the same
            // transaction: no second commit, and nothing waits for a key that came in the same batch.
            var openedKeys = 0
            if batch.storedKeys, let keyOpener { openedKeys = try EventStore.openKeyDeliveries(db: db, opener: keyOpener, receivedMs: receivedMs) }
            if !batch.storedSealed.isEmpty || openedKeys > 0 { _ = try EventStore.decryptPending(db: db, receivedMs: receivedMs, stored: batch.storedSealed) }
            if batch.strippedContent {
                // FTS5 keeps deleted terms in older index segments until they merge; merge now so redacted text
                // is gone from the file, not just from query results.
                try db.execute(sql: "INSERT INTO message_search (message_search) VALUES ('optimize')")
                stripped = true
            }
            for (index, hash) in chainedInputs { outcomes[index] = batch.finalOutcome(hash: hash) }
            // Every chained input is in judgedOrder once; anything more was released by this batch. Usually
            // nothing is, and then no set of hashes needs building.
            var released: [(eventID: String, outcome: IngestOutcome)] = []
            if batch.judgedOrder.count > chainedInputs.count {
                let inputHashes = Set(chainedInputs.map(\.hash))
                released = batch.judgedOrder.filter { !inputHashes.contains($0.hash) }.map {
                    (eventID: $0.eventID, outcome: batch.finalOutcome(hash: $0.hash))
                }
            }
            let report = IngestReport(outcomes: outcomes.map { $0! }, events: events, released: released, collisions: batch.collisions)
            if requireAccepted, let index = report.outcomes.firstIndex(where: { $0 != .accepted }) {
                // Throwing rolls the whole transaction back.
                throw try StoreError(refusing: report.outcomes[index], eventID: events[index]?.eventID, hash: events[index]?.hash, batch: batch, db: db)
            }
            return report
        }
        // Only now that the transaction is committed may other calls see the new states.
        for entry in states { cache.set(entry.state, version: entry.version, for: entry.roomID) }
        if stripped {
            // The write-ahead log still holds the pages as they were before stripping; fold it into the main file
            // (where secure_delete zeroed them) and truncate it. Busy readers only postpone this to a later batch.
            try? pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        }
        return report
    }
}

/// The work of one ingest transaction.
///
/// Each event is chained against the newest link of its chain, kept in memory for the batch (one query per chain,
/// not per event). An event that comes after everything its room has judged is authorized at once and inserted
/// with its final status: the common case, one INSERT per event. Anything older is inserted provisionally and its
/// room is re-judged from that point when the batch finishes.
struct IngestBatch {
    let db: Database
    let store: EventStore
    let receivedMs: Int64
    /// The one statement run per event, looked up once per batch: finding it in GRDB's cache hashes its SQL text.
    let insertStatement: Statement
    /// What the batch knows of each chain it has seen, read from the store the first time: its newest chained link
    /// (`nil`: none) and the seq of its first fork (`nil`: none). In one dictionary, so that an event looks its chain
    /// up once and updates it once.
    var chains: [ChainID: (head: ChainLink?, forkedAt: Int64?)] = [:]
    var authorizers: [String: RoomAuthorizer] = [:]
    /// Events to judge again when the batch finishes, by room: arrived out of order, or their target arrived.
    var late: [String: [VerifiedEvent]] = [:]
    /// Final verdicts of the events this batch chained or judged again, by hash.
    var verdicts: [String: Authorization] = [:]
    /// Events chained or judged again in this batch, in that order.
    var judgedOrder: [(eventID: String, hash: String)] = []
    /// The events this batch inserted and their row ids, so judging a room again does not read them back. A list,
    /// made a dictionary only when a room is judged again: hashing every row id cost more than the rare lookups.
    var storedEvents: [(rowID: Int64, event: VerifiedEvent)] = []
    var hasPending: Bool
    var strippedContent = false
    /// The sealed events this batch stored, by row, so the batch can open them without reading them back.
    var storedSealed: [Int64: StoredSealed] = [:]
    /// Whether an `m.room.key` event was stored, so the batch should open what it gives this device.
    var storedKeys = false
    /// Events stored although another event already carried their event id: their id and hash.
    var collisions: [(eventID: String, hash: String)] = []
    /// The rooms' states after this batch, for the cache once the transaction commits.
    var finishedStates: [(roomID: String, state: RoomState, version: Int64)] = []
    /// Rejections logged by this batch, per sending device (`nil`: input that is not an event).
    var loggedRejections: [String?: Int] = [:]
    /// The newest event row committed before this batch: rows after it are this batch's own.
    let committedUpTo: Int64

    init(db: Database, store: EventStore, receivedMs: Int64) throws {
        self.db = db
        self.store = store
        self.receivedMs = receivedMs
        insertStatement = try db.cachedStatement(sql: IngestBatch.insertSQL)
        committedUpTo = try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id) FROM events")) ?? 0
        hasPending = try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM pending_events)")) ?? false
    }

    func finalOutcome(hash: String) -> IngestOutcome {
        switch verdicts[hash] {
        case .accepted?: .accepted
        case .rejected(let reason)?: .unauthorized(reason)
        case .awaitingTarget(let target)?: .heldBack("waiting for the event it refers to, \(target)")
        case nil: .accepted
        }
    }

    /// Logs a refusal. For an event that parsed, the log keeps its envelope without content: a refused copy must
    /// not keep text that a redaction later strips everywhere else.
    mutating func logRejection(reason: String, event: Event?, excerpt: [UInt8]) throws {
        // Past the cap the refusal is still reported to the caller, only not kept: one input must not fill the log.
        guard loggedRejections[event?.senderKey, default: 0] < EventStore.rejectedPerSenderPerBatch else { return }
        loggedRejections[event?.senderKey, default: 0] += 1
        let kept = event.map { $0.stripped().wireBytes() } ?? Array(excerpt.prefix(4096))
        try db.cachedStatement(
            sql: """
                INSERT INTO rejected_events (received_ms, room_id, event_id, hash, reason, excerpt) VALUES (?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [receivedMs, event?.roomID, event?.eventID, nil as String?, reason, Data(kept)])
    }

    /// What the batch knows of `chain` (``chains``), read from the store the first time it is asked.
    mutating func memo(of chain: ChainID) throws -> (head: ChainLink?, forkedAt: Int64?) {
        if let known = chains[chain] { return known }
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT seq, hash, timestamp_ms FROM events WHERE room_id = ? AND sender_key = ? ORDER BY seq DESC LIMIT 1"),
            arguments: [chain.roomID, chain.senderKey])
        let forkedAt = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT MIN(seq) FROM forks WHERE room_id = ? AND sender_key = ?"),
            arguments: [chain.roomID, chain.senderKey])
        let memo = (head: row.map { ChainLink(seq: $0[0], hash: $0[1], timestampMs: $0[2]) }, forkedAt: forkedAt)
        chains[chain] = memo
        return memo
    }

    func link(_ chain: ChainID, seq: Int64) throws -> ChainLink? {
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT hash, timestamp_ms FROM events WHERE room_id = ? AND sender_key = ? AND seq = ?"),
            arguments: [chain.roomID, chain.senderKey, seq])
        return row.map { ChainLink(seq: seq, hash: $0[0], timestampMs: $0[1]) }
    }

    /// Puts `event` through the chain rules and, when it extends its chain, stores and (if it can) authorizes it.
    /// Returns `nil` when it was chained (its outcome is its verdict), otherwise its outcome.
    mutating func offer(_ event: VerifiedEvent) throws -> IngestOutcome? {
        let envelope = event.event
        let chain = ChainID(envelope)
        let (newest, forkedAt) = try memo(of: chain)
        var existing: ChainLink?
        var predecessor: ChainLink?
        if let newest, envelope.seq <= newest.seq {
            existing = envelope.seq == newest.seq ? newest : try link(chain, seq: envelope.seq)
        } else if let newest, newest.seq == envelope.seq - 1 {
            predecessor = newest
        }
        let verdict = ChainRules.judge(event, atSameSeq: existing, predecessor: predecessor, forkedAt: forkedAt)
        switch verdict {
        case .extends:
            try store(event)
            chains[chain]?.head = ChainLink(event)
            if hasPending { try releasePending(after: event) }
            return nil
        case .duplicate:
            return .duplicate
        case .awaitingPredecessor(let seq):
            try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO pending_events (hash, room_id, sender_key, waiting_for_seq, received_ms, wire)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [event.hash, chain.roomID, chain.senderKey, seq, receivedMs, Data(event.wire)])
            if db.changesCount == 0 { return .duplicate }
            hasPending = true
            return .heldBack("waiting for seq \(seq) of device \(envelope.senderKey.prefix(12))… (a gap in its chain)")
        case .fork(let existingHash):
            let original = try Data.fetchOne(
                db.cachedStatement(sql: "SELECT wire FROM events WHERE room_id = ? AND sender_key = ? AND seq = ? AND hash = ?"),
                arguments: [chain.roomID, chain.senderKey, envelope.seq, existingHash])
            let proof = ForkProof(try VerifiedEvent(storedWire: original?.bytes ?? []), event)
            try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO forks (room_id, sender_key, seq, first, second, detected_ms) VALUES (?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [chain.roomID, chain.senderKey, envelope.seq, Data(proof.first), Data(proof.second), receivedMs])
            chains[chain]?.forkedAt = min(forkedAt ?? envelope.seq, envelope.seq)
            let reason =
                "fork: device \(envelope.senderKey.prefix(12))… of \(envelope.senderID) signed two different events at seq \(envelope.seq); proof kept, its later events refused"
            try logRejection(reason: reason, event: envelope, excerpt: event.wire)
            return .rejected(reason)
        case .rejected(let fault):
            try logRejection(reason: fault.description, event: envelope, excerpt: event.wire)
            return .rejected(fault.description)
        }
    }

    /// Inserts a chained event, authorized now if it comes after everything its room has judged, provisionally
    /// otherwise.
    mutating func store(_ event: VerifiedEvent) throws {
        let roomID = event.event.roomID
        if event.event.type == EventType.roomKey { storedKeys = true }
        // Taken out of the dictionary for the duration, so updating it copies nothing.
        var authorizer = try authorizers.removeValue(forKey: roomID) ?? RoomAuthorizer(db: db, store: store, roomID: roomID, committedUpTo: committedUpTo)
        defer { authorizers[roomID] = authorizer }
        // Once an event of this room had to wait for re-judgement, the state after it is not known until the
        // batch finishes: every later event of the room waits too.
        let inOrder = late[roomID] == nil && authorizer.isAfterEverythingJudged(event)
        let judged = inOrder ? authorizer.judgeNew(event) : nil
        let status = judged.map { RoomAuthorizer.status(of: $0.verdict) }
        let rowID: Int64
        do {
            rowID = try insert(event, status: status, content: judged?.content, scope: judged?.scope, collision: 0)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            // Only the event id can collide here: hash and (room, key, seq) were checked by the chain rules. Another
            // device's event already carries this id: keep both (§6.5), and judge again what refers to the id.
            rowID = try storeColliding(event, status: status, content: judged?.content, scope: judged?.scope, authorizer: &authorizer)
        }
        judgedOrder.append((event.event.eventID, event.hash))
        storedEvents.append((rowID, event))
        if event.event.type == EventType.encrypted {
            var sealed: EncryptedContent?
            if case .encrypted(let parsed)? = judged?.content { sealed = parsed }
            storedSealed[rowID] = StoredSealed(event: event.event, content: sealed)
        }
        if let judged {
            authorizer.commit(judged, event: event)
            if judged.verdict == .accepted {
                try authorizer.applyEffects(of: event, content: judged.content, id: rowID)
            }
            verdicts[event.hash] = judged.verdict
        } else {
            late[roomID, default: []].append(event)
        }
        if authorizer.hasAwaiting {
            late[roomID, default: []] += try authorizer.eventsAwaiting(targets: [event.event.eventID])
        }
        if case .awaitingTarget? = judged?.verdict { authorizer.hasAwaiting = true }
    }

    /// Stores an event whose id an already stored event carries, keeps the pair as evidence, and has everything
    /// that refers to the id judged again once the batch finishes: a new candidate can make a relation that was
    /// refused acceptable, and change which events a redaction hides (§8.5).
    mutating func storeColliding(
        _ event: VerifiedEvent, status: (EventStatus, String?)?, content: EventContent?, scope: RedactionScope?, authorizer: inout RoomAuthorizer
    ) throws -> Int64 {
        let envelope = event.event
        // Both by the unique index on (event_id, id_collision): however many events carry the id, one probe each.
        let next =
            (try Int64.fetchOne(db.cachedStatement(sql: "SELECT MAX(id_collision) FROM events WHERE event_id = ?"), arguments: [envelope.eventID]) ?? 0) + 1
        let first = try Data.fetchOne(db.cachedStatement(sql: "SELECT wire FROM events WHERE event_id = ? AND id_collision = 0"), arguments: [envelope.eventID])
        let rowID = try insert(event, status: status, content: content, scope: scope, collision: next)
        if let wire = first {
            let collision = EventIDCollision(try Event.parse(wire.bytes), envelope)
            try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO event_id_collisions (room_id, event_id, first, second, detected_ms) VALUES (?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [envelope.roomID, envelope.eventID, Data(collision.first), Data(collision.second), receivedMs])
        }
        collisions.append((envelope.eventID, event.hash))
        // What refers to the id is judged again once per batch, however many copies of it the batch brings.
        if authorizer.collidedIDs.insert(envelope.eventID).inserted {
            let referring = try authorizer.events(referringTo: envelope.eventID)
            if !referring.isEmpty { late[envelope.roomID, default: []] += referring }
        }
        return rowID
    }

    /// Chains events that were waiting for `event`, and those waiting for them in turn.
    mutating func releasePending(after event: VerifiedEvent) throws {
        let rows = try Row.fetchAll(
            db.cachedStatement(sql: "SELECT hash, wire FROM pending_events WHERE room_id = ? AND sender_key = ? AND waiting_for_seq = ?"),
            arguments: [event.event.roomID, event.event.senderKey, event.event.seq])
        for row in rows {
            try db.cachedStatement(sql: "DELETE FROM pending_events WHERE hash = ?").execute(arguments: [row[0] as String])
            _ = try offer(try VerifiedEvent(storedWire: (row[1] as Data).bytes))
        }
    }

    static let insertSQL = """
        INSERT INTO events (hash, event_id, room_id, sender_id, sender_key, seq, timestamp_ms, type, parent_event_id,
            target_event_id, relation_key, status, reason, wire, id_collision)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """

    /// - Parameter content: the content already parsed when the event was judged, if it was.
    /// - Returns: the new row's id.
    /// - Parameters:
    ///   - scope: for an accepted redaction, what it hides (kept as its `relation_key`).
    ///   - collision: 0, or the number that tells this event from earlier ones carrying the same event id.
    func insert(
        _ event: VerifiedEvent, status: (EventStatus, String?)?, content parsed: EventContent?, scope: RedactionScope?, collision: Int64
    ) throws -> Int64 {
        let envelope = event.event
        var target: String?
        var relationKey: String?
        var receipt: (kind: ReceiptKind, heads: [ReceiptHead])?
        if let content = envelope.content, envelope.type != EventType.message {
            switch parsed ?? (try? EventContent.parse(type: envelope.type, content: content, roomID: envelope.roomID)) {
            case .edit(let id, _)?: target = id
            case .redaction(let id, _)?:
                target = id
                relationKey = scope?.text
            case .reaction(let id, let key)?:
                target = id
                relationKey = key
            case .receipt(let kind, let id, let heads)?:
                target = id
                relationKey = kind.rawValue
                if !heads.isEmpty { receipt = (kind, heads) }
            default: break
            }
        }
        // The one statement run per event: bound directly, without boxing fourteen arguments and copying the wire
        // bytes into `Data` first.
        let handle = insertStatement.sqliteStatement
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        func bind(_ index: Int32, _ text: String?) {
            guard var text else { return }
            text.withUTF8 { bytes in
                _ = sqlite3_bind_text(
                    handle, index, UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self), Int32(bytes.count), sqliteTransient)
            }
        }
        bind(1, event.hash)
        bind(2, envelope.eventID)
        bind(3, envelope.roomID)
        bind(4, envelope.senderID)
        bind(5, envelope.senderKey)
        sqlite3_bind_int64(handle, 6, envelope.seq)
        sqlite3_bind_int64(handle, 7, envelope.timestampMs)
        bind(8, envelope.type)
        bind(9, envelope.parentEventID)
        bind(10, target)
        bind(11, relationKey)
        sqlite3_bind_int64(handle, 12, Int64(status?.0.rawValue ?? -1))
        bind(13, status?.1)
        sqlite3_bind_int64(handle, 15, collision)
        let result = event.wire.withUnsafeBytes { wire in
            sqlite3_bind_blob(handle, 14, wire.baseAddress, Int32(wire.count), nil)
            return sqlite3_step(handle)
        }
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        guard result == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: result), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
        // From SQLite directly: GRDB's accessor first checks which dispatch queue it runs on, a third of the cost.
        let row = sqlite3_last_insert_rowid(db.sqliteConnection)
        if envelope.type == EventType.message, envelope.content?["file"] != nil {
            try EventStore.recordFileMessage(db, row: row, roomID: envelope.roomID)
        }
        if let receipt {
            try EventStore.recordReceiptHeads(
                db, roomID: envelope.roomID, receiptRow: row, readerKey: envelope.senderKey, kind: receipt.kind, heads: receipt.heads)
        }
        return row
    }

    /// Judges again, room by room, everything from the oldest late event on; then records each room's progress.
    mutating func finish() throws {
        let stored = late.isEmpty ? [:] : Dictionary(storedEvents, uniquingKeysWith: { _, newer in newer })
        for roomID in late.keys.sorted() {
            guard var authorizer = authorizers[roomID], let events = late[roomID], !events.isEmpty else { continue }
            let results = try authorizer.rejudge(from: events.map { EventOrder($0.event) }.min()!, known: stored)
            verdicts.merge(results) { _, new in new }
            var known = Set(judgedOrder.map(\.hash))
            // An event may be queued twice (it arrived late, and refers to an id that another event took meanwhile).
            judgedOrder += events.filter { known.insert($0.hash).inserted }.map { ($0.event.eventID, $0.hash) }
            authorizers[roomID] = authorizer
        }
        var changes: Int64 = 0
        for (roomID, var authorizer) in authorizers.sorted(by: { $0.key < $1.key }) {
            for eventID in authorizer.collidedIDs.sorted() { try authorizer.refreshRedactions(of: eventID) }
            if let version = try authorizer.finish() { finishedStates.append((roomID, authorizer.state, version)) }
            if authorizer.strippedContent { strippedContent = true }
            changes += authorizer.changesRecorded
        }
        if changes > 0 {
            // The oldest changes go, never this batch's own (the newest ids), however many it wrote.
            try db.cachedStatement(sql: "DELETE FROM event_changes WHERE id <= (SELECT MAX(id) FROM event_changes) - ?")
                .execute(arguments: [changes + EventStore.feedChangesKept])
        }
    }
}

/// SQLite's "copy this value now" destructor, for bindings that outlive nothing.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

extension StoreError {
    /// Why a node's own event was refused (`requireAccepted`): the room's rules, a room or an event the store does not
    /// hold, or the event itself.
    init(refusing outcome: IngestOutcome, eventID: String?, hash: String?, batch: IngestBatch, db: Database) throws {
        switch outcome {
        case .unauthorized(let reason):
            if let eventID, let roomID = try String.fetchOne(db, sql: "SELECT room_id FROM events WHERE event_id = ? LIMIT 1", arguments: [eventID]),
                try !EventStore.holdsRoom(db: db, roomID: roomID)
            {
                self.init(.unknownRoom, "This node holds no room \(roomID).", remedy: "Create it, or import its events first.")
            } else {
                self.init(.notAllowed, "The room refuses this: \(reason).")
            }
        case .heldBack(let reason):
            if let hash, case .awaitingTarget(let target)? = batch.verdicts[hash] {
                self.init(.unknownEvent, "This node does not hold event \(target), which this one refers to.")
            } else {
                self.init(.invalidEvent, "The event was not stored: \(reason).")
            }
        case .rejected(let reason): self.init(.invalidEvent, "The event was not stored: \(reason).")
        case .duplicate: self.init(.invalidEvent, "The event was not stored: it is stored already.")
        case .accepted: preconditionFailure("an accepted event is no refusal")
        }
    }
}

extension EventStore {
    /// Whether the store holds `roomID`'s founding create, accepted.
    static func holdsRoom(db: Database, roomID: String) throws -> Bool {
        try Bool.fetchOne(
            db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = ? AND type = 'm.room.create' AND status = 0)"), arguments: [roomID])
            ?? false
    }
}
