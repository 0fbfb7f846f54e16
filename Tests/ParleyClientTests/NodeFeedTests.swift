import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyTesting
import Testing

@Suite struct NodeFeedTests {
    /// Everything the feed posts until `sentinel`, which the test posts after what it waits for.
    func activity(until sentinel: NodeActivity, in subscription: NodeFeed.Subscription) async -> [NodeActivity] {
        var seen: [NodeActivity] = []
        for await item in subscription.activity {
            if item == sentinel { break }
            seen.append(item)
        }
        return seen
    }

    @Test func `an event stored while it waited for the event it refers to is announced once that event arrives`() async throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("home"))
        _ = try Identity.create(userID: "owner", home: home)
        let node = try Node(home: home)
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        let time: Int64 = 1_790_000_000_000
        let founding = alice.create("r", at: time)
        let invite = alice.invite("r", bob, at: time + 1)
        let joined = bob.join("r", at: time + 2)
        let message = alice.message("r", "hello", at: time + 3)
        let reaction = bob.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: time + 4)
        // The reaction comes first: it is stored, waiting for the message it refers to.
        let early = try node.store.ingest(events: founding + [invite, joined, reaction], receivedMs: time)
        guard case .heldBack = early.outcomes.last else {
            Issue.record("the reaction should wait for its message: \(early.outcomes)")
            return
        }

        // Announced before anyone listens: what follows is what the message brings.
        try node.feed.catchUp()
        let subscription = node.feed.subscribe()
        _ = try node.store.ingest(events: [message], receivedMs: time + 5)
        try node.feed.catchUp()
        let sentinel = NodeActivity.typing(roomID: "r", userID: "sentinel", isTyping: false)
        node.feed.post(sentinel)

        let announced = await activity(until: sentinel, in: subscription).flatMap { item -> [String] in
            guard case .events(let roomID, let events) = item, roomID == "r" else { return [] }
            return events.map(\.eventID)
        }
        #expect(announced.sorted() == [message.event.eventID, reaction.event.eventID].sorted())
    }

    @Test func `an event accepted later is announced once, however many times the feed looks`() async throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("home"))
        _ = try Identity.create(userID: "owner", home: home)
        let node = try Node(home: home)
        var alice = TestDevice("alice")
        let time: Int64 = 1_790_000_000_000
        let founding = alice.create("r", at: time)
        let message = alice.message("r", "hello", at: time + 1)
        let edit = alice.relate("r", EventType.edit, to: message.event.eventID, ["body": "hello again"], at: time + 2)
        let subscription = node.feed.subscribe()
        // The edit arrives in one batch and the message in the next: the edit waits, then is accepted.
        _ = try node.store.ingest(events: founding, receivedMs: time)
        try node.feed.catchUp()
        _ = try node.store.ingest(events: [edit], receivedMs: time)
        try node.feed.catchUp()
        _ = try node.store.ingest(events: [message], receivedMs: time)
        for _ in 0..<3 { try node.feed.catchUp() }
        let sentinel = NodeActivity.typing(roomID: "r", userID: "sentinel", isTyping: false)
        node.feed.post(sentinel)

        let announced = await activity(until: sentinel, in: subscription).flatMap { item -> [String] in
            guard case .events(_, let events) = item else { return [] }
            return events.map(\.eventID)
        }
        #expect(announced.filter { $0 == edit.event.eventID }.count == 1)
        #expect(announced.filter { $0 == message.event.eventID }.count == 1)
        #expect(Set(announced) == Set(founding.map(\.event.eventID) + [message.event.eventID, edit.event.eventID]))
    }

    @Test func `hundreds of events released at once are each announced once, with the events that released them`() async throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("home"))
        _ = try Identity.create(userID: "owner", home: home)
        let node = try Node(home: home)
        var alice = TestDevice("alice")
        var bob = TestDevice("bob")
        let time: Int64 = 1_790_000_000_000
        let founding = alice.create("r", at: time) + [alice.invite("r", bob, at: time + 1), bob.join("r", at: time + 2)]
        let messages = (0..<700).map { alice.message("r", "message \($0)", at: time + 10 + Int64($0)) }
        let reactions = messages.enumerated().map { index, message in
            bob.relate("r", EventType.reaction, to: message.event.eventID, ["key": "👍"], at: time + 1_000 + Int64(index))
        }
        // Bob's reactions first: each waits for its message.
        _ = try node.store.ingest(events: founding + reactions, receivedMs: time)
        try node.feed.catchUp()
        let subscription = node.feed.subscribe()
        _ = try node.store.ingest(events: messages, receivedMs: time)
        try node.feed.catchUp()
        let sentinel = NodeActivity.typing(roomID: "r", userID: "sentinel", isTyping: false)
        node.feed.post(sentinel)

        let announced = await activity(until: sentinel, in: subscription).flatMap { item -> [String] in
            guard case .events(_, let events) = item else { return [] }
            return events.map(\.eventID)
        }
        #expect(announced.count == 1_400)
        #expect(Set(announced) == Set((messages + reactions).map(\.event.eventID)))
    }
}
