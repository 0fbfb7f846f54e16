import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyTesting
import Testing

@Suite struct RoomListTests {
    @Test(
        "a message mentions a user when @ and the user id stand alone",
        arguments: [
            ("hi @alice", true), ("@alice", true), ("@alice.", true), ("@alice, look", true), ("(@alice)", true), ("👋@alice!", true),
            ("@alicex", false), ("@alice.x", false), ("@alice-bob", false), ("bob@alice", false), ("/home/@alice", false), ("@ali", false),
            ("alice", false), ("@ALICE", false), ("@alicex and then @alice", true),
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

        _ = try node.receipt("r", eventID: messages[1].event.eventID, kind: .read)
        let after = try node.roomSummary("r")
        #expect(after.unread == 2)
        #expect(after.mentions == 1)
    }
}
