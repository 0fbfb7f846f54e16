import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyTesting
import Testing

@Suite struct RoomListTests {
    @Test(
        "a message mentions a user when @ and the user id stand alone",
        arguments: [
            ("hi @alice", true), ("@alice", true), ("@alice.", true), ("@alice, look", true), ("(@alice)", true), ("👋 @alice!", true),
            ("@alicex", false), ("@alice.x", false), ("@alice-bob", false), ("bob@alice", false), ("/home/@alice", false), ("@ali", false),
            ("alice", false), ("@ALICE", false), ("BOB@alice", false), ("josé@alice", false), ("x+y@alice", false), ("👋@alice", false),
            ("@alicex and then @alice", true),
        ])
    func mentions(text: String, expected: Bool) {
        #expect(Node.mentions(text, userID: "alice") == expected)
    }

    @Test func `the room list counts unread messages and those that mention this user, until a read receipt passes them`() throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("home"))
        _ = try Identity.create(userID: "alice", home: home)
        let time: Int64 = 1_790_000_000_000
        let node = try Node(home: home, clock: { time })
        _ = try node.createRoom("r")
        var bob = TestDevice("bob")
        _ = try node.invite("r", userID: "bob", key: bob.publicKey)
        let joined = bob.join("r", at: time + 10)
        let messages = ["hi @alice", "hello @alicex", "plain", "@alice, look"].enumerated().map { index, text in
            bob.message("r", text, at: time + 11 + Int64(index))
        }
        _ = try node.store.ingest(events: [joined] + messages, receivedMs: time)

        let before = try node.roomSummary("r")
        #expect(before.unread == 4)
        #expect(before.mentions == 2)

        // Counted in the text as edited: the last message no longer mentions alice, then "plain" does.
        let unmention = bob.relate("r", EventType.edit, to: messages[3].event.eventID, ["body": "look"], at: time + 20)
        _ = try node.store.ingest(events: [unmention], receivedMs: time)
        #expect(try node.roomSummary("r").mentions == 1)
        let mention = bob.relate("r", EventType.edit, to: messages[2].event.eventID, ["body": "plain, @alice"], at: time + 21)
        _ = try node.store.ingest(events: [mention], receivedMs: time)
        #expect(try node.roomSummary("r").mentions == 2)

        _ = try node.receipt("r", eventID: messages[2].event.eventID, kind: .read)
        let after = try node.roomSummary("r")
        #expect(after.unread == 1)
        #expect(after.mentions == 0)
    }
}
