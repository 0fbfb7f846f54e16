import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Synchronization
import Testing

@_spi(Tools) @testable import ParleyClient

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
        let error = try #require(throws: ClientError.self) { try node.publish(roomID: "r", burst) }
        #expect(error.code == .unknownEvent)
        #expect(error.message == "This node does not hold event \(unknown), which this one refers to.")
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 2)
        // The seqs stay free: the next event takes seq 3.
        #expect(try node.send("r", text: "after").event.seq == 3)
    }

    @Test func `a burst with an event over the size limit fails as too_large and stores none of it`() throws {
        let directory = TemporaryDirectory()
        let node = try node(directory)
        _ = try node.createRoom("r")
        let huge = OutgoingEvent.message(String(repeating: "x", count: 70_000))
        let error = try #require(throws: ClientError.self) { try node.publish(roomID: "r", [.message("small"), huge, .message("after")]) }
        #expect(error.code == .tooLarge)
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 2)
        // Sent one at a time from many threads, the large one alone is refused.
        let outcomes = Mutex<[Int: Bool]>([:])
        DispatchQueue.concurrentPerform(iterations: 16) { index in
            let stored = (try? node.send("r", text: index == 5 ? String(repeating: "x", count: 70_000) : "message \(index)")) != nil
            outcomes.withLock { $0[index] = stored }
        }
        #expect(outcomes.withLock { $0 } == Dictionary(uniqueKeysWithValues: (0..<16).map { ($0, $0 != 5) }))
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 2 + 15)
    }

    @Test func `a burst the room's rules refuse fails as not_allowed, and one into a room the node does not hold as unknown_room`() throws {
        let directory = TemporaryDirectory()
        let node = try node(directory)
        _ = try node.createRoom("r")
        // Only carol may join as carol.
        let carol = TestDevice("carol")
        let joinForCarol = OutgoingEvent(
            type: EventType.member, content: MemberContent(membership: .join, userID: "carol", devices: [carol.binding]).jsonObject)
        let refused = try #require(throws: ClientError.self) { try node.publish(roomID: "r", [.message("first"), joinForCarol]) }
        #expect(refused.code == .notAllowed)
        #expect(refused.message.hasPrefix("The room refuses this: "), "\(refused.message)")
        #expect(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64)?.seq == 2)

        let unknown = try #require(throws: ClientError.self) { try node.publish(roomID: "elsewhere", [.message("one"), .message("two")]) }
        #expect(unknown.code == .unknownRoom)
        #expect(unknown.message == "This node holds no room elsewhere.")
        #expect(try node.store.roomIDs() == ["r"])
    }

    @Test func `events published at once by many threads are stored in one unbroken chain, each with its own verdict`() throws {
        let directory = TemporaryDirectory()
        let node = try node(directory)
        _ = try node.createRoom("r")
        let unknown = EventID.make(roomID: "r", timestampMs: 1, randomBytes: Array(repeating: 1, count: 16))
        let outcomes = Mutex<[Int: Result<VerifiedEvent, ClientError>]>([:])
        DispatchQueue.concurrentPerform(iterations: 64) { index in
            // Every eighth caller edits an event nobody holds: the room refuses it, and only it.
            let outcome = Result { () throws(ClientError) -> VerifiedEvent in
                do {
                    return index % 8 == 7
                        ? try node.publish(roomID: "r", type: EventType.edit, content: JSONObject(["target_event_id": .string(unknown), "body": "edited"]))
                        : try node.send("r", text: "message \(index)")
                } catch {
                    throw ClientError(describing: error)
                }
            }
            outcomes.withLock { $0[index] = outcome }
        }
        let all = outcomes.withLock { $0 }
        #expect(all.count == 64)
        for (index, outcome) in all {
            switch outcome {
            case .success(let event):
                #expect(index % 8 != 7)
                #expect(event.event.type == EventType.message)
            case .failure(let error):
                #expect(index % 8 == 7, "\(error)")
                #expect(error.code == .unknownEvent)
            }
        }
        let head = try #require(try node.store.chainHead(roomID: "r", senderKey: node.identity.signingKeyBase64))
        #expect(head.seq == 2 + 56)
        let stored = Set(all.values.compactMap { try? $0.get().event.seq })
        #expect(stored == Set(3...58))
        #expect(Set(try node.timeline("r", limit: 100).compactMap(\.body)) == Set((0..<64).filter { $0 % 8 != 7 }.map { "message \($0)" }))
    }

    @Test func `a moderator's redaction of an id two members' events carry is refused unless all copies are meant`() throws {
        let directory = TemporaryDirectory()
        let alice = try node(directory)
        _ = try alice.createRoom("r")
        var bob = TestDevice("bob")
        var mallory = TestDevice("mallory")
        _ = try alice.invite("r", userID: "bob", key: bob.publicKey)
        _ = try alice.invite("r", userID: "mallory", key: mallory.publicKey)
        let now = Node.systemClock()
        let joins = [bob.join("r", at: now + 1), mallory.join("r", at: now + 1)]
        let message = bob.message("r", "bob's", at: now + 2)
        let copy = mallory.message("r", "spam", at: 0, copying: message.event)
        let report = try alice.store.ingest(lines: (joins + [message, copy]).map(\.wire), receivedMs: now)
        try #require(report.outcomes.allSatisfy { $0 == .accepted }, "\(report.outcomes)")
        do {
            _ = try alice.redact("r", eventID: message.event.eventID, reason: nil)
            Issue.record("a redaction hiding both copies was published without asking")
        } catch let error as ClientError {
            #expect(error.code == .ambiguousEvent)
            #expect(error.details.count == 2 && error.details.contains { $0.hasPrefix("bob,") } && error.details.contains { $0.hasPrefix("mallory,") })
        }
        _ = try alice.redact("r", eventID: message.event.eventID, reason: nil, allCopies: true)
        #expect(try alice.timeline("r", limit: 100).filter { $0.eventID == message.event.eventID }.allSatisfy(\.redacted))
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
