import Foundation
import ParleyClient
import ParleyCore
import ParleyTesting
import Testing

@Suite struct PublishTests {
    func node(_ directory: TemporaryDirectory) throws -> Node {
        let home = ParleyHome(path: directory.file("home"))
        _ = try Identity.create(userID: "alice", home: home)
        return try Node(home: home)
    }

    @Test func `a burst of messages is signed and stored as one unbroken chain`() throws {
        let directory = TemporaryDirectory()
        let node = try node(directory)
        _ = try node.createRoom("r")
        let texts = (0..<1000).map { "message \($0)" }
        let events = try node.publish(roomID: "r", texts.map { OutgoingEvent.message($0) })
        #expect(events.map(\.event.seq) == Array(3...1002))
        #expect(zip(events.dropFirst(), events).allSatisfy { $0.event.prevEventHash == $1.hash })
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 1002)
        #expect(try node.timeline("r", limit: 2000).compactMap(\.body).suffix(1000) == texts[...])
    }

    @Test func `a burst with one event the room refuses stores none of it`() throws {
        let directory = TemporaryDirectory()
        let node = try node(directory)
        _ = try node.createRoom("r")
        var burst = (0..<500).map { OutgoingEvent.message("message \($0)") }
        let unknown = EventID.make(roomID: "r", timestampMs: 1, randomBytes: Array(repeating: 1, count: 16))
        burst.insert(OutgoingEvent(type: EventType.edit, content: JSONObject(["target_event_id": .string(unknown), "body": "edited"])), at: 300)
        #expect(throws: ClientError.self) { try node.publish(roomID: "r", burst) }
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 2)
        // The seqs stay free: the next event takes seq 3.
        #expect(try node.send("r", text: "after").event.seq == 3)
    }
}

@Suite struct BufferedRandomTests {
    @Test func `buffered random words are filled from the system across refills`() {
        var generator = BufferedRandom()
        // 100 words span four refills of 32; a refill that left words unset or repeated the last would repeat here.
        let words = (0..<100).map { _ in generator.next() }
        #expect(Set(words).count == words.count)
        #expect(words.allSatisfy { $0 != 0 })
    }
}
