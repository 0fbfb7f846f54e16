import Foundation
import GRDB
import ParleyCore
import ParleySync
import ParleyTesting
import Testing

@testable import ParleyStore

func verdictName(_ outcome: IngestOutcome) -> String {
    switch outcome {
    case .accepted, .duplicate: "accepted"
    case .unauthorized: "rejected"
    case .heldBack: "held"
    case .rejected: "invalid"
    }
}

@Suite struct EventStoreTests {
    let directory = TemporaryDirectory()

    func makeStore() throws -> EventStore { try EventStore(path: directory.file("parley.sqlite")) }

    @Test func `a store made with the bucket's own tables keeps its bucket rooms, cursors, outbox, files read and read failures as the bucket transport's`()
        throws
    {
        let path = directory.file("old.sqlite")
        // The store as the version before the transport tables left it, with one row in each bucket table.
        let queue = try DatabaseQueue(path: path)
        try EventStore.migrator.migrate(queue, upTo: "v8-rejected-log-limit")
        try queue.write { db in
            try db.execute(
                sql: """
                    INSERT INTO bucket_rooms VALUES ('team', 'file:///srv/bucket', '\(String(repeating: "ab", count: 32))', 1700000000000, 1700000000500, 1699999999000);
                    INSERT INTO bucket_uploads VALUES (7, 'team', 'rooms/team/logs/a.jsonl', 3, 5, 10, 12, NULL, 20, 21);
                    INSERT INTO bucket_uploads VALUES (8, 'team', 'rooms/team/logs/b.jsonl', 6, 6, 13, 13, x'0a', 22, NULL);
                    INSERT INTO bucket_files VALUES ('team', 'rooms/team/logs/c.jsonl', 100, 4, 'bad line', 30);
                    INSERT INTO bucket_read_failures VALUES ('team', 'rooms/team/logs/d.jsonl', 2, 40, 50);
                    """)
        }
        try queue.close()

        let store = try EventStore(path: path)
        let room = try #require(try store.transportRoom(.bucket, roomID: "team"))
        #expect(room.location == "file:///srv/bucket")
        #expect(room.creatorFingerprint == String(repeating: "ab", count: 32))
        #expect(String(decoding: room.cursor, as: UTF8.self) == #"{"full_listing_ms":1699999999000,"hints_ms":1700000000500,"logs_ms":1700000000000}"#)
        #expect(try store.outboxWatermark(.bucket, roomID: "team") == 5)
        let unconfirmed = try store.unconfirmedOutbox(.bucket, roomID: "team")
        #expect(unconfirmed.map(\.name) == ["rooms/team/logs/b.jsonl"] && unconfirmed.first?.content == [0x0A] && unconfirmed.first?.id == 8)
        #expect(
            try store.receivedProblems(.bucket, roomID: "team") == [ReceivedObject(name: "rooms/team/logs/c.jsonl", size: 100, events: 4, problem: "bad line")])
        #expect(try store.readFailures(.bucket, roomID: "team") == ["rooms/team/logs/d.jsonl": ReadFailureRecord(attempts: 2, firstMs: 40, nextMs: 50)])
        let tables = try store.pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'bucket%'") }
        #expect(tables.isEmpty)
        // Another transport's rows are its own.
        #expect(try store.transportRooms(TransportName("relay")).isEmpty)
    }

    @Test func `the store's writes are synced to disk at every commit, in WAL mode, secure_delete on`() throws {
        let store = try makeStore()
        let (synchronous, journal, secureDelete) = try store.pool.writeWithoutTransaction { db in
            (
                try Int.fetchOne(db, sql: "PRAGMA synchronous"), try String.fetchOne(db, sql: "PRAGMA journal_mode"),
                try Int.fetchOne(db, sql: "PRAGMA secure_delete")
            )
        }
        // 2 is FULL: with WAL, NORMAL (1) leaves a commit unsynced until the next checkpoint.
        #expect(synchronous == 2)
        #expect(journal == "wal")
        #expect(secureDelete == 1)
    }

    @Test(arguments: try StateScenarioData.all())
    func `the store reaches the same verdicts and state as the reference replay, in any arrival order`(scenario: StateScenarioData) throws {
        let reference = RoomReplay(roomID: scenario.roomID, events: scenario.events)
        var generator = SeededGenerator(seed: 9)
        for round in 0..<6 {
            let roundDirectory = TemporaryDirectory()
            let store = try EventStore(path: roundDirectory.file("s.sqlite"))
            let order = round == 0 ? scenario.events : scenario.events.shuffled(using: &generator)
            // Mix batch sizes so late events land both inside a batch and in a later one.
            var index = 0
            while index < order.count {
                let size = Int.random(in: 1...4, using: &generator)
                _ = try store.ingest(lines: order[index..<min(order.count, index + size)].map(\.wire), receivedMs: 0)
                index += size
            }
            let outcomes = try store.outcomes(of: scenario.events.map { ($0.event.eventID, $0.hash) })
            for event in scenario.events {
                let expected: String =
                    switch reference.verdicts[event.hash] {
                    case .accepted?: "accepted"
                    case .rejected?: "rejected"
                    default: "held"
                    }
                #expect(
                    outcomes[event.hash].map(verdictName) == expected,
                    "round \(round): \(event.event.type) seq \(event.event.seq) of \(event.event.senderID): \(String(describing: outcomes[event.hash]))")
            }
            var expected = reference.state
            expected.pinCreate()
            #expect(try store.roomState(roomID: scenario.roomID) == expected, "round \(round)")
            // The store also compares forwards with their originals, which a timeline alone cannot (RoutingTests).
            let got = try store.timeline(roomID: scenario.roomID, limit: 1000).map { item in
                var item = item
                item.forwarded?.check = nil
                return item
            }
            let want = scenario.vector.timeline()
            #expect(got == want, "round \(round): \(zip(got, want).filter { $0 != $1 })")
        }
    }

    @Test func `a create claiming an earlier time cannot take over a room this node already holds`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var mallory = TestDevice("mallory")
        _ = try store.ingest(lines: alice.create("r", at: 2_000).map(\.wire), receivedMs: 0)
        let takeover = mallory.create("r", at: 1_000)
        let report = try store.ingest(lines: takeover.map(\.wire), receivedMs: 0)
        guard case .unauthorized(let reason) = report.outcomes[0] else {
            Issue.record("takeover create not refused: \(report.outcomes)")
            return
        }
        #expect(reason.contains("another m.room.create founded this room"))
        #expect(try store.roomState(roomID: "r")?.creation?.creatorID == "alice")
        #expect(try store.roomState(roomID: "r")?.isJoinedDevice(user: "alice", key: alice.publicKey) == true)
    }

    @Test func `an event copying another device's id neither blocks nor hides it, in every arrival order`() throws {
        var alice = TestDevice("alice")
        var mallory = TestDevice("mallory")
        var events = alice.create("r", at: 1_000)
        events.append(alice.invite("r", mallory, at: 1_001))
        events.append(mallory.join("r", at: 1_002))
        let setup = events.count
        let message = alice.message("r", "alice's", at: 2_000)
        let copy = mallory.message("r", "mallory's, under alice's id", at: 0, copying: message.event)
        let redaction = mallory.relate("r", EventType.redaction, to: message.event.eventID, at: 2_001)
        let after = alice.message("r", "alice goes on", at: 2_002)
        let edit = alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "alice's, edited"], at: 2_003)
        events += [message, copy, redaction, after, edit]
        let reference = RoomReplay(roomID: "r", events: events)
        let accepted = events.filter { reference.verdicts[$0.hash] == .accepted }.map(\.event)
        let timeline = Timeline.resolve(
            items: accepted.filter { Timeline.itemTypes.contains($0.type) }, relations: accepted.filter { !Timeline.itemTypes.contains($0.type) },
            targets: reference.relations)
        let alices = try #require(timeline.first { $0.eventID == message.event.eventID && $0.senderID == "alice" })
        #expect(alices.body == "alice's, edited" && !alices.redacted)
        #expect(timeline.first { $0.eventID == message.event.eventID && $0.senderID == "mallory" }?.redacted == true)
        for order in Array(events[setup...]).permutations() {
            let roundDirectory = TemporaryDirectory()
            let store = try EventStore(path: roundDirectory.file("s.sqlite"))
            _ = try store.ingest(lines: events[..<setup].map(\.wire), receivedMs: 0)
            for event in order { _ = try store.ingest(lines: [event.wire], receivedMs: 0) }
            let outcomes = try store.outcomes(of: events.map { ($0.event.eventID, $0.hash) })
            for event in events {
                #expect(outcomes[event.hash].map(verdictName) == (reference.verdicts[event.hash] == .accepted ? "accepted" : "rejected"))
            }
            #expect(try store.timeline(roomID: "r", limit: 100) == timeline)
            #expect(try store.eventIDCollisions(roomID: "r").map(\.eventID) == [message.event.eventID])
            #expect(try store.items(eventID: message.event.eventID).map(\.senderID).sorted() == ["alice", "mallory"])
            #expect(try store.heldBackCount(roomID: "r") == 0)
        }
    }

    @Test func `many events carrying one id are each stored once, and what refers to the id is judged once per batch`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var mallory = TestDevice("mallory")
        var events = alice.create("r", at: 1_000)
        events.append(alice.invite("r", mallory, at: 1_001))
        events.append(mallory.join("r", at: 1_002))
        _ = try store.ingest(lines: events.map(\.wire), receivedMs: 0)
        let message = alice.message("r", "the one", at: 2_000)
        let reactions = (0..<20).map { alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": .string("k\($0)")], at: 2_001 + Int64($0)) }
        // Reactions first, waiting for their target; then the message and 1,000 copies of its id in one batch.
        _ = try store.ingest(lines: reactions.map(\.wire), receivedMs: 0)
        let copies = (0..<1_000).map { _ in mallory.message("r", "copy", at: 0, copying: message.event) }
        let report = try store.ingest(lines: ([message] + copies).map(\.wire), receivedMs: 0)
        #expect(report.outcomes.allSatisfy { $0 == .accepted })
        #expect(report.collisions.count == 1_000)
        #expect(Set(report.released.map(\.eventID)).count == report.released.count)
        #expect(report.released.count == reactions.count)
        let item = try #require(try store.timeline(roomID: "r", limit: 2_000).first { $0.eventID == message.event.eventID && $0.senderID == "alice" })
        #expect(item.reactions.count == 20)
        #expect(try store.eventIDCollisions(roomID: "r").count == 1_000)
    }

    @Test func `ingesting the same events twice changes nothing`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let events = alice.create("r", at: 1_000) + (0..<10).map { alice.message("r", "m\($0)", at: 2_000 + Int64($0)) }
        let first = try store.ingest(lines: events.map(\.wire), receivedMs: 0)
        #expect(first.outcomes.allSatisfy { $0 == .accepted })
        let second = try store.ingest(lines: events.map(\.wire), receivedMs: 0)
        #expect(second.outcomes.allSatisfy { $0 == .duplicate })
        var exported: [[UInt8]] = []
        try store.forEachEvent(roomID: "r") { exported.append($0) }
        #expect(exported == events.map(\.wire))
    }

    @Test func `a gap holds later events back until it is filled, then releases them`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let events = alice.create("r", at: 1_000) + (0..<4).map { alice.message("r", "m\($0)", at: 2_000 + Int64($0)) }
        _ = try store.ingest(lines: Array(events[0..<3]).map(\.wire), receivedMs: 0)
        let held = try store.ingest(lines: [events[4].wire], receivedMs: 0)
        guard case .heldBack(let reason) = held.outcomes[0] else {
            Issue.record("not held back: \(held.outcomes[0])")
            return
        }
        #expect(reason.contains("waiting for seq 4"))
        #expect(try store.heldBackCount(roomID: "r") == 1)
        let filled = try store.ingest(lines: [events[3].wire], receivedMs: 0)
        #expect(filled.outcomes == [.accepted])
        #expect(filled.released.map(\.eventID) == [events[4].event.eventID])
        #expect(filled.released.map(\.outcome) == [.accepted])
        #expect(try store.heldBackCount(roomID: "r") == 0)
        let timeline = try store.timeline(roomID: "r", limit: 10)
        #expect(timeline.compactMap(\.body) == ["m0", "m1", "m2"])
    }

    @Test func `a fork is refused, proven, and stops the device's later events`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let setup = alice.create("r", at: 1_000)
        let original = alice.message("r", "one", at: 2_000)
        alice.rewind("r", to: 2, hash: setup[1].hash)
        let forked = alice.message("r", "another one", at: 2_001)
        let after = alice.message("r", "two", at: 2_002)
        let report = try store.ingest(lines: (setup + [original, forked, after]).map(\.wire), receivedMs: 0)
        #expect(report.outcomes[2] == .accepted)
        guard case .rejected(let reason) = report.outcomes[3], case .rejected(let later) = report.outcomes[4] else {
            Issue.record("fork not refused: \(report.outcomes)")
            return
        }
        #expect(reason.contains("fork"))
        #expect(later.contains("fork"))
        let proofs = try store.forkProofs(roomID: "r")
        #expect(proofs.count == 1)
        #expect(try proofs[0].verify().seq == 3)
        #expect(try store.rejectedEvents().count == 2)
    }

    @Test func `malformed lines are logged with their reason and the rest of the batch is stored`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let events = alice.create("r", at: 1_000)
        var tampered = alice.message("r", "hello", at: 2_000).wire
        tampered[tampered.count / 2] ^= 0x04
        let report = try store.ingest(lines: [events[0].wire, Array("{\"a\":1,\"a\":2}".utf8), tampered, events[1].wire], receivedMs: 5)
        #expect(report.outcomes[0] == .accepted)
        #expect(report.outcomes[3] == .accepted)
        guard case .rejected(let duplicateKey) = report.outcomes[1], case .rejected = report.outcomes[2] else {
            Issue.record("bad lines accepted: \(report.outcomes)")
            return
        }
        #expect(duplicateKey.contains("duplicate object key"))
        let log = try store.rejectedEvents()
        #expect(log.count == 2)
        #expect(log.allSatisfy { $0.receivedMs == 5 })
    }

    @Test func `a redaction strips the content from the store, the index and the file, and the envelope still verifies`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let secret = "zanzibarquokka"
        let setup = alice.create("r", at: 1_000)
        let message = alice.message("r", "my password is \(secret)", at: 2_000)
        let edit = alice.relate("r", EventType.edit, to: message.event.eventID, ["body": .string("my password is \(secret)!")], at: 2_500)
        let events = setup + [message, edit]
        _ = try store.ingest(lines: events.map(\.wire), receivedMs: 0)
        #expect(try store.search(secret).count == 1)
        _ = try store.ingest(lines: [alice.relate("r", EventType.redaction, to: message.event.eventID, at: 3_000).wire], receivedMs: 0)
        #expect(try store.search(secret).isEmpty)
        let stored = try #require(try store.event(eventID: message.event.eventID))
        #expect(stored.event.event.isStripped)
        #expect(try VerifiedEvent(parsing: stored.event.wire).hash == message.hash)
        let item = try #require(try store.timeline(roomID: "r", limit: 10).first { $0.eventID == message.event.eventID })
        #expect(item.redacted && item.body == nil)
        for name in ["parley.sqlite", "parley.sqlite-wal"] {
            let path = directory.file(name)
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            #expect(data.range(of: Data(secret.utf8)) == nil, "\(name) still contains the redacted text")
        }
    }

    @Test func `a redaction that arrives before its target strips the target when it comes`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var setup = alice.create("r", at: 1_000)
        setup += [alice.invite("r", bob, at: 1_001), bob.join("r", at: 1_002)]
        let message = bob.message("r", "spam", at: 2_000)
        let redaction = alice.relate("r", EventType.redaction, to: message.event.eventID, at: 3_000)
        _ = try store.ingest(lines: setup.map(\.wire), receivedMs: 0)
        let early = try store.ingest(lines: [redaction.wire], receivedMs: 0)
        guard case .heldBack = early.outcomes[0] else {
            Issue.record("redaction not held: \(early.outcomes[0])")
            return
        }
        let late = try store.ingest(lines: [message.wire], receivedMs: 0)
        #expect(late.outcomes == [.accepted])
        #expect(late.released.map(\.outcome) == [.accepted])
        #expect(try store.event(eventID: message.event.eventID)?.event.event.isStripped == true)
    }

    @Test func `search finds the current text of edited messages, not the replaced text`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let setup = alice.create("r", at: 1_000)
        let message = alice.message("r", "meet at the harbour", at: 2_000)
        let edit = alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "meet at the station"], at: 2_500)
        _ = try store.ingest(lines: (setup + [message, edit]).map(\.wire), receivedMs: 0)
        #expect(try store.search("harbour").isEmpty)
        let hits = try store.search("station")
        #expect(hits.map(\.item.eventID) == [message.event.eventID])
        #expect(hits.first?.item.body == "meet at the station")
        #expect(try store.search("\"unbalanced").isEmpty, "search text is not FTS syntax")
    }

    @Test func `redacting an edit makes search fall back to the text before it`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let setup = alice.create("r", at: 1_000)
        let message = alice.message("r", "lunch at noon", at: 2_000)
        let edit = alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "lunch at marrakesh"], at: 2_500)
        _ = try store.ingest(lines: (setup + [message, edit]).map(\.wire), receivedMs: 0)
        #expect(try store.search("marrakesh").count == 1)
        _ = try store.ingest(lines: [alice.relate("r", EventType.redaction, to: edit.event.eventID, at: 3_000).wire], receivedMs: 0)
        #expect(try store.search("marrakesh").isEmpty)
        #expect(try store.search("noon").map(\.item.body) == ["lunch at noon"])
    }

    @Test func `a message stays redacted while any accepted redaction of it remains`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var carol = TestDevice("carol")
        var mod = TestDevice("mod")
        var setup = alice.create("r", at: 1_000)
        for other in [bob, carol, mod] { setup.append(alice.invite("r", other, at: 1_001)) }
        setup += [bob.join("r", at: 1_002), carol.join("r", at: 1_002), mod.join("r", at: 1_002)]
        var levels = PowerLevels.initial(creator: "alice")
        levels.users["carol"] = 100
        levels.users["mod"] = 50
        setup.append(alice.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_010))
        let message = bob.message("r", "spam spam", at: 1_025)
        let byMod = mod.relate("r", EventType.redaction, to: message.event.eventID, at: 1_030)
        let byAlice = alice.relate("r", EventType.redaction, to: message.event.eventID, at: 1_040)
        _ = try store.ingest(lines: (setup + [message, byMod, byAlice]).map(\.wire), receivedMs: 0)
        // Carol's demotion of mod, dated before mod's redaction, arrives late: mod's redaction is no longer allowed.
        levels.users["mod"] = 0
        let demotion = carol.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_020)
        _ = try store.ingest(lines: [demotion.wire], receivedMs: 0)
        let outcomes = try store.outcomes(of: [(byMod.event.eventID, byMod.hash), (byAlice.event.eventID, byAlice.hash)])
        #expect(verdictName(outcomes[byMod.hash]!) == "rejected")
        #expect(outcomes[byAlice.hash] == .accepted)
        let item = try #require(try store.timeline(roomID: "r", limit: 50).first { $0.eventID == message.event.eventID })
        #expect(item.redacted)
        // An edit arriving now is stripped on arrival: the store still counts the message as redacted.
        let lateEdit = bob.relate("r", EventType.edit, to: message.event.eventID, ["body": "spam again"], at: 1_050)
        #expect(try store.ingest(lines: [lateEdit.wire], receivedMs: 0).outcomes == [.accepted])
        #expect(try store.event(eventID: lateEdit.event.eventID)?.event.event.isStripped == true)
        #expect(try store.search("spam").isEmpty)
    }

    @Test func `the timeline pages back from the newest item`() throws {
        let store = try makeStore()
        var alice = TestDevice("alice")
        let setup = alice.create("r", at: 1_000)
        let messages = (0..<30).map { alice.message("r", "m\($0)", at: 2_000 + Int64($0)) }
        _ = try store.ingest(lines: (setup + messages).map(\.wire), receivedMs: 0)
        let newest = try store.timeline(roomID: "r", limit: 5)
        #expect(newest.compactMap(\.body) == ["m25", "m26", "m27", "m28", "m29"])
        let first = try #require(newest.first)
        let older = try store.timeline(roomID: "r", limit: 5, before: first.order)
        #expect(older.compactMap(\.body) == ["m20", "m21", "m22", "m23", "m24"])
    }
}

/// State vectors, for the store's agreement test.
extension Array {
    /// Every ordering of the elements (n! of them: for small arrays).
    func permutations() -> [[Element]] {
        guard count > 1 else { return [self] }
        return indices.flatMap { index in
            var rest = self
            let first = rest.remove(at: index)
            return rest.permutations().map { [first] + $0 }
        }
    }
}

struct StateScenarioData: CustomTestStringConvertible, Sendable {
    let vector: StateVector
    var roomID: String { vector.roomID }
    var events: [VerifiedEvent] { vector.events }
    var testDescription: String { vector.name }

    static func all() throws -> [StateScenarioData] { try StateVector.all().map(StateScenarioData.init) }
}

/// Properties of the schema that per-event cost depends on, read from SQLite's own plans.
@Suite struct StoreSchemaTests {
    @Test func `storing an event builds no temporary table, and state replay reads only its partial index`() throws {
        let directory = TemporaryDirectory()
        let store = try EventStore(path: directory.file("parley.sqlite"))
        try store.pool.read { db in
            // An IN list in a partial index's WHERE made SQLite fill a temporary table on every INSERT.
            let opcodes = try Row.fetchAll(
                db, sql: "EXPLAIN \(IngestBatch.insertSQL)", arguments: StatementArguments(Array(repeating: nil as String?, count: 15))
            )
            .map { $0["opcode"] as String }
            #expect(opcodes.contains("Insert"))
            #expect(!opcodes.contains("OpenEphemeral"))
            for bounded in [false, true] {
                let plan = try Row.fetchAll(
                    db, sql: "EXPLAIN QUERY PLAN \(RoomAuthorizer.replaySQL(bounded: bounded))", arguments: bounded ? ["room", 0, 0, "", ""] : ["room"])
                let details = plan.map { $0["detail"] as String }
                #expect(details.contains { $0.contains("USING INDEX events_replayed") }, "\(details)")
                #expect(!details.contains { $0.contains("TEMP B-TREE") }, "\(details)")
            }
        }
    }
}
