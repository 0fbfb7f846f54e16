import ParleyCore
import ParleyTesting
import Testing

struct StateScenario: CustomTestStringConvertible, Sendable {
    let vector: StateVector
    var name: String { vector.name }
    var roomID: String { vector.roomID }
    var events: [VerifiedEvent] { vector.events }
    var verdicts: [String] { vector.verdicts }
    var expected: JSONValue { vector.expected }
    var testDescription: String { vector.name }

    static func all() throws -> [StateScenario] { try StateVector.all().map(StateScenario.init) }

    /// Checks `state` against the scenario's expected state.
    func check(_ state: RoomState) {
        #expect(state.creation?.creatorID == expected["creator"]?.stringValue)
        #expect(state.name == expected["name"]?.stringValue)
        #expect(state.topic == expected["topic"]?.stringValue)
        let members = expected["members"]!.objectValue!
        #expect(Set(state.members.keys) == Set(members.keys))
        for member in members.members {
            let actual = state.members[member.key]
            #expect(actual?.membership.rawValue == member.value["membership"]!.text, "membership of \(member.key)")
            #expect(Set(actual?.devices.keys.map { $0 } ?? []) == Set(member.value["devices"]!.array.map(\.text)), "devices of \(member.key)")
        }
        for level in expected["power_levels"]!.objectValue!.members {
            #expect(state.powerLevels.level(of: level.key) == level.value.integerValue, "level of \(level.key)")
        }
    }
}

func verdictName(_ authorization: Authorization?) -> String {
    switch authorization {
    case .accepted?: "accepted"
    case .rejected?: "rejected"
    case .awaitingTarget?: "awaiting"
    case nil: "missing"
    }
}

@Suite struct StateTests {
    @Test(arguments: try StateScenario.all())
    func `state scenarios give the expected verdicts and final state`(scenario: StateScenario) {
        let replay = RoomReplay(roomID: scenario.roomID, events: scenario.events)
        for (event, expected) in zip(scenario.events, scenario.verdicts) {
            #expect(
                verdictName(replay.verdicts[event.hash]) == expected,
                "\(event.event.type) at seq \(event.event.seq) by \(event.event.senderID): \(String(describing: replay.verdicts[event.hash]))")
        }
        scenario.check(replay.state)
        if let redacted = scenario.vector.redacted {
            let hidden = scenario.vector.timeline().filter(\.redacted).compactMap { item in
                scenario.events.first { $0.event.eventID == item.eventID && $0.event.senderID == item.senderID }?.hash
            }
            #expect(Set(hidden) == redacted)
        }
    }

    @Test(arguments: try StateScenario.all())
    func `the resolved state does not depend on the order events arrive in`(scenario: StateScenario) {
        let reference = RoomReplay(roomID: scenario.roomID, events: scenario.events)
        var generator = SeededGenerator(seed: 42)
        for _ in 0..<20 {
            var ledger = Ledger()
            for event in scenario.events.shuffled(using: &generator) { _ = ledger.ingest(event) }
            let replay = ledger.replay(roomID: scenario.roomID)
            #expect(replay.state == reference.state)
            #expect(replay.verdicts == reference.verdicts)
        }
    }

    @Test func `the state and replayed type checks agree with the type sets for every type and near miss`() {
        let types = [
            EventType.create, EventType.member, EventType.powerLevels, EventType.name, EventType.topic, EventType.message, EventType.edit,
            EventType.redaction, EventType.reaction, EventType.receipt, EventType.encryption, EventType.encrypted, EventType.roomKey,
        ]
        #expect(EventType.replayedTypes.isSubset(of: types))
        let nearMisses = types.map { $0 + " " } + types.map { $0.uppercased() } + types.map { String($0.dropLast()) } + ["", "m.room"]
        for type in types + nearMisses {
            #expect(EventType.isState(type) == EventType.stateTypes.contains(type), "\(type)")
            #expect(EventType.isReplayed(type) == EventType.replayedTypes.contains(type), "\(type)")
        }
    }

    @Test func `rejections say what was wrong`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var events = alice.create("r", at: 1_000)
        let intruder = bob.message("r", "hello?", at: 1_001)
        events.append(intruder)
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(replay.verdicts[intruder.hash] == .rejected("sender bob is not a member of the room"))
    }

    @Test func `a member cannot promote itself`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var events = alice.create("r", at: 1_000)
        events.append(alice.invite("r", bob, at: 1_001))
        events.append(bob.join("r", at: 1_002))
        var levels = PowerLevels.initial(creator: "alice")
        levels.users["bob"] = 100
        let promotion = bob.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_003)
        events.append(promotion)
        let replay = RoomReplay(roomID: "r", events: events)
        guard case .rejected(let reason)? = replay.verdicts[promotion.hash] else {
            Issue.record("self-promotion accepted")
            return
        }
        #expect(reason == "sending m.room.power_levels needs power level 50; bob has 0")
        #expect(replay.state.powerLevels.level(of: "bob") == 0)
    }

    @Test func `a moderator cannot raise anyone above their own level`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var events = alice.create("r", at: 1_000)
        events.append(alice.invite("r", bob, at: 1_001))
        events.append(bob.join("r", at: 1_002))
        var levels = PowerLevels.initial(creator: "alice")
        levels.users["bob"] = 50
        events.append(alice.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_003))
        levels.users["bob"] = 60
        let promotion = bob.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_004)
        events.append(promotion)
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(replay.verdicts[promotion.hash] == .rejected("cannot set bob to level 60, above the sender's own 50"))
    }

    @Test func `the creator needs an invite to come back after leaving`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        events.append(alice.membership("r", .leave, of: "alice", at: 1_001))
        let rejoin = alice.join("r", at: 1_002)
        events.append(rejoin)
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(verdictName(replay.verdicts[rejoin.hash]) == "rejected")
    }

    @Test func `event levels are compared as they are in force, defaults included`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var events = alice.create("r", at: 1_000)
        events += [alice.invite("r", bob, at: 1_001), bob.join("r", at: 1_002)]
        var levels = PowerLevels.initial(creator: "alice")
        levels.users["bob"] = 50
        events.append(alice.sign("r", EventType.powerLevels, levels.jsonObject, at: 1_003))
        var same = levels
        same.events[EventType.name] = 50  // the state default already: no change in force
        let harmless = bob.sign("r", EventType.powerLevels, same.jsonObject, at: 1_004)
        var raised = same
        raised.events[EventType.topic] = 100
        let lockout = bob.sign("r", EventType.powerLevels, raised.jsonObject, at: 1_005)
        events += [harmless, lockout]
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(replay.verdicts[harmless.hash] == .accepted)
        #expect(replay.verdicts[lockout.hash] == .rejected("cannot change the level of m.room.topic beyond the sender's own level 50"))
    }

    @Test func `a redaction of an event not held yet waits for it`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let redaction = alice.relate("r", EventType.redaction, to: "r::20250914T120045.123Z::abababab-abab-4bab-abab-abababababab", at: 1_001)
        events.append(redaction)
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(replay.verdicts[redaction.hash] == .awaitingTarget("r::20250914T120045.123Z::abababab-abab-4bab-abab-abababababab"))
    }

    @Test func `reactions are judged by their target alone, and an event cannot refer to itself`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let message = alice.message("r", "hi", at: 1_001)
        let first = alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 1_002)
        let second = alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 1_003)
        let onAState = alice.relate("r", EventType.reaction, to: events[0].event.eventID, ["key": "👍"], at: 1_004)
        events += [message, first, second, onAState]
        let replay = RoomReplay(roomID: "r", events: events)
        #expect(replay.verdicts[first.hash] == .accepted)
        #expect(replay.verdicts[second.hash] == .accepted, "duplicates are counted once by the timeline, not refused")
        #expect(replay.verdicts[onAState.hash] == .rejected("only m.room.message events take reactions, not m.room.create"))

        let ownID = EventID.make(roomID: "r", timestampMs: 1_005, randomBytes: [UInt8](repeating: 9, count: 16))
        let selfReceipt = alice.key.signEvent(
            roomID: "r", type: EventType.receipt, content: JSONObject(["receipt_type": "read", "event_id": .string(ownID)]), senderID: "alice",
            seq: 7, previousHash: onAState.hash, timestampMs: 1_005, eventID: ownID)
        let withSelf = RoomReplay(roomID: "r", events: events + [selfReceipt])
        #expect(withSelf.verdicts[selfReceipt.hash] == .rejected("an event cannot refer to itself"))
    }
}

@Suite struct PinnedCreateTests {
    @Test func `with a pinned create, an earlier-dated create does not found the room`() {
        var alice = TestDevice("alice")
        var mallory = TestDevice("mallory")
        let genuine = alice.create("r", at: 2_000)
        let takeover = mallory.create("r", at: 1_000)
        let unpinned = RoomReplay(roomID: "r", events: genuine + takeover)
        #expect(unpinned.state.creation?.creatorID == "mallory", "without a pin the earliest create wins")
        let pinned = RoomReplay(roomID: "r", events: genuine + takeover, pinnedCreateHash: genuine[0].hash)
        #expect(pinned.state.creation?.creatorID == "alice")
        #expect(verdictName(pinned.verdicts[takeover[0].hash]) == "rejected")
    }
}
