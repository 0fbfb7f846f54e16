import ParleyCore
import ParleyTesting
import Testing

@Suite struct TimelineTests {
    /// Authorizes `events` and resolves the timeline from the accepted ones.
    func timeline(_ roomID: String, _ events: [VerifiedEvent]) -> [TimelineItem] {
        let replay = RoomReplay(roomID: roomID, events: events)
        let accepted = events.filter { replay.verdicts[$0.hash] == .accepted }.map(\.event)
        let items = accepted.filter { Timeline.itemTypes.contains($0.type) }
        let relations = accepted.filter { !Timeline.itemTypes.contains($0.type) }
        return Timeline.resolve(items: items, relations: relations, targets: replay.relations)
    }

    @Test func `the newest edit wins and the history is kept`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let message = alice.message("r", "helo", at: 2_000)
        events.append(message)
        events.append(alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "hello"], at: 3_000))
        events.append(alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "hello!"], at: 4_000))
        let item = timeline("r", events).first { $0.eventID == message.event.eventID }!
        #expect(item.body == "hello!")
        #expect(item.edited)
        #expect(item.edits.map(\.body) == ["hello", "hello!"])
    }

    @Test func `a redacted message has no body, no edits and no reactions`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let message = alice.message("r", "oops", at: 2_000)
        events.append(message)
        events.append(alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "oops!"], at: 2_500))
        events.append(alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 2_600))
        events.append(alice.relate("r", EventType.redaction, to: message.event.eventID, at: 3_000))
        let item = timeline("r", events).first { $0.eventID == message.event.eventID }!
        #expect(item.redacted)
        #expect(item.body == nil)
        #expect(item.edits.isEmpty)
        #expect(item.reactions.isEmpty)
    }

    @Test func `reactions group users by key, and a redacted reaction is gone`() {
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        var events = alice.create("r", at: 1_000)
        events += [alice.invite("r", bob, at: 1_001), bob.join("r", at: 1_002)]
        let message = alice.message("r", "lunch?", at: 2_000)
        let bobYes = bob.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 2_100)
        events += [message, bobYes, alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 2_200)]
        events.append(bob.relate("r", EventType.reaction, to: message.event.eventID, ["key": "🍕"], at: 2_300))
        events.append(alice.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: 2_250))
        var item = timeline("r", events).first { $0.eventID == message.event.eventID }!
        #expect(item.reactions == ["👍": ["alice", "bob"], "🍕": ["bob"]], "alice's second 👍 counts once")
        events.append(bob.relate("r", EventType.redaction, to: bobYes.event.eventID, at: 2_400))
        item = timeline("r", events).first { $0.eventID == message.event.eventID }!
        #expect(item.reactions == ["👍": ["alice"], "🍕": ["bob"]])
    }

    @Test func `replies keep their parent and state changes read as sentences`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        let question = alice.message("r", "question", at: 2_000)
        let answer = alice.message("r", "answer", at: 3_000, parent: question.event.eventID)
        events += [question, answer, alice.sign("r", EventType.name, JSONObject(["name": "Help"]), at: 4_000)]
        let items = timeline("r", events)
        #expect(items.map(\.type) == [EventType.create, EventType.member, EventType.message, EventType.message, EventType.name])
        #expect(items[3].parentEventID == question.event.eventID)
        #expect(items[1].summary == "alice joined")
        #expect(items[4].summary == "alice named the room \"Help\"")
    }

    @Test func `events sharing a millisecond keep their chain order`() {
        var alice = TestDevice("alice")
        var events = alice.create("r", at: 1_000)
        events += (0..<20).map { alice.message("r", "m\($0)", at: 2_000) }
        let bodies = timeline("r", events).compactMap(\.body)
        #expect(bodies == (0..<20).map { "m\($0)" })
    }

    @Test func `a user's invite of their own new device and a leave naming a device read as device changes`() {
        var alice = TestDevice("alice")
        let phone = TestDevice("alice", keyName: "phone")
        var events = alice.create("r", at: 1_000)
        events.append(alice.sign("r", EventType.member, MemberContent(membership: .invite, userID: "alice", devices: [phone.binding]).jsonObject, at: 2_000))
        events.append(
            alice.sign(
                "r", EventType.member, MemberContent(membership: .leave, userID: "alice", devices: [DeviceBinding(signingKey: phone.publicKey)]).jsonObject,
                at: 3_000))
        events.append(alice.membership("r", .leave, of: "alice", at: 4_000))
        let summaries = timeline("r", events).compactMap(\.summary)
        #expect(
            summaries.suffix(3) == [
                "alice linked a new device (\(phone.publicKey.prefix(12))…)", "alice removed a device (\(phone.publicKey.prefix(12))…)", "alice left",
            ])
    }
}
