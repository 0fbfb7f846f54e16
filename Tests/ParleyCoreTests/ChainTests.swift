import ParleyCore
import ParleyTesting
import Testing

struct ChainScenario: CustomTestStringConvertible, Sendable {
    let name: String
    let events: [VerifiedEvent]
    let outcomes: [String]
    let finallyChained: Int?
    var testDescription: String { name }

    static func all() throws -> [ChainScenario] {
        try Vectors.load("chains.json")["scenarios"]!.array.map { item in
            ChainScenario(
                name: item["name"]!.text, events: try item["events"]!.array.map { try VerifiedEvent(parsing: Array($0.text.utf8)) },
                outcomes: item["outcomes"]!.array.map(\.text), finallyChained: item["finally_chained"]?.integerValue.map(Int.init))
        }
    }
}

func describe(_ outcome: LedgerOutcome) -> String {
    switch outcome {
    case .chained: "chained"
    case .duplicate: "duplicate"
    case .awaitingPredecessor(let seq): "awaiting:\(seq)"
    case .fork: "fork"
    case .rejected: "rejected"
    }
}

@Suite struct ChainTests {
    @Test(arguments: try ChainScenario.all())
    func `chain scenarios give the expected outcome for each event`(scenario: ChainScenario) {
        var ledger = Ledger()
        var observed: [String] = []
        for event in scenario.events {
            // The first outcome is the offered event's own; the rest are events it released.
            observed.append(describe(ledger.ingest(event)[0].1))
        }
        #expect(observed == scenario.outcomes)
        if let expected = scenario.finallyChained {
            #expect(ledger.rooms.values.reduce(0) { $0 + $1.count } == expected)
        }
    }

    @Test func `a gap is filled when the missing event arrives, releasing everything held behind it`() {
        var alice = TestDevice("alice")
        let events = (0..<5).map { alice.message("r", "m\($0)", at: 1_000 + Int64($0)) }
        var ledger = Ledger()
        _ = ledger.ingest(events[0])
        #expect(ledger.ingest(events[3])[0].1 == .awaitingPredecessor(seq: 3))
        #expect(ledger.ingest(events[2])[0].1 == .awaitingPredecessor(seq: 2))
        #expect(ledger.heldBack.count == 2)
        let released = ledger.ingest(events[1])
        #expect(released.map(\.1) == [.chained, .chained, .chained])
        #expect(ledger.heldBack.isEmpty)
        #expect(ledger.ingest(events[4])[0].1 == .chained)
    }

    @Test func `a fork yields a proof anyone can check, naming the device and seq`() throws {
        var alice = TestDevice("alice")
        let first = alice.message("r", "one", at: 1_000)
        alice.rewind("r", to: 0, hash: nil)
        let second = alice.message("r", "other one", at: 1_001)
        var ledger = Ledger()
        _ = ledger.ingest(first)
        guard case .fork(let proof) = ledger.ingest(second)[0].1 else {
            Issue.record("no fork detected")
            return
        }
        let convicted = try proof.verify()
        #expect(convicted.senderKey == alice.publicKey)
        #expect(convicted.seq == 1)
        #expect(ledger.forks == [proof])
        #expect(ForkProof(second, first) == proof, "the proof does not depend on which event came first")
    }

    @Test func `a prev_event_hash naming an event of the same chain other than the previous one is refused`() {
        var alice = TestDevice("alice")
        let first = alice.message("r", "one", at: 1_000)
        let second = alice.message("r", "two", at: 1_001)
        // A seq 3 pointing back at seq 1, skipping seq 2; then a seq 3 pointing at that refused event.
        alice.rewind("r", to: 2, hash: first.hash)
        let skipping = alice.message("r", "three", at: 1_002)
        alice.rewind("r", to: 2, hash: second.hash)
        let loop = alice.key.signEvent(
            roomID: "r", type: EventType.message, content: JSONObject(["msgtype": "text", "body": "loop"]), senderID: "alice", seq: 3,
            previousHash: skipping.hash, timestampMs: 1_003,
            eventID: EventID.make(roomID: "r", timestampMs: 1_003, randomBytes: [UInt8](repeating: 7, count: 16)))
        var ledger = Ledger()
        _ = ledger.ingest(first)
        _ = ledger.ingest(second)
        for event in [skipping, loop] {
            guard case .rejected(let reason) = ledger.ingest(event)[0].1 else {
                Issue.record("accepted a prev_event_hash that is not seq 2's hash")
                continue
            }
            #expect(reason.contains("does not match the hash"))
        }
    }

    @Test func `a forged fork proof is refused`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        let a = alice.message("r", "one", at: 1_000)
        let b = bob.message("r", "one", at: 1_000)
        #expect(throws: ForkProof.Invalid.self) { try ForkProof(a, b).verify() }
        #expect(throws: ForkProof.Invalid.self) { try ForkProof(a, a).verify() }
        var tampered = a.event.envelopeBytes()
        tampered[tampered.count - 3] ^= 1
        #expect(throws: ForkProof.Invalid.self) { try ForkProof(first: a.event.envelopeBytes(), second: tampered).verify() }
    }

    @Test func `an event carrying another device's event id is chained, and the pair is kept as evidence`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        let original = alice.message("r", "one", at: 1_000)
        let bobFirst = bob.message("r", "first", at: 999)
        let copy = bob.message("r", "x", at: 0, copying: original.event)
        let bobNext = bob.message("r", "after the copy", at: 1_001)
        for order in [[original, bobFirst, copy, bobNext], [bobFirst, copy, bobNext, original], [bobNext, copy, original, bobFirst]] {
            var ledger = Ledger()
            for event in order { _ = ledger.ingest(event) }
            #expect(ledger.heldBack.isEmpty)
            #expect(Set(ledger.rooms["r"]!.map(\.hash)) == Set([original, bobFirst, copy, bobNext].map(\.hash)))
            #expect(ledger.collisions.count == 1)
            #expect(ledger.collisions.first?.eventID == original.event.eventID)
        }
    }
}
