import Foundation
import GRDB
import ParleyCore
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient
@testable import ParleyStore

/// Priorities and forwarded messages (docs/PROTOCOL.md §7.6): what the nodes write, what readers see, what queries
/// find, and how a forward is checked against its original.
@Suite struct RoutingTests {
    func item(_ client: BucketClient, _ eventID: String) throws -> TimelineItem {
        try #require(try client.node.store.item(eventID: eventID))
    }

    @Test func `a priority travels on a sealed message's envelope, reaches the reader, and queries find it by its index`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        _ = try alice.node.enableEncryption("team", .epochs(history: .shared))
        let quiet = try alice.node.send("team", text: "whenever", priority: .low).event
        let plain = try alice.node.send("team", text: "as usual").event
        let outbox = try alice.node.store.outboxStatus(roomID: "team", senderKey: alice.node.identity.signingKeyBase64)
        #expect(outbox.priority == .normal)
        let urgent = try alice.node.send("team", text: "the server is down", priority: .urgent).event
        #expect(try alice.node.store.outboxStatus(roomID: "team", senderKey: alice.node.identity.signingKeyBase64).priority == .urgent)
        // In clear on the envelope, for transports; not inside, where only members look.
        #expect(urgent.type == EventType.encrypted && urgent.content?["priority"]?.stringValue == "urgent")
        #expect(plain.content?["priority"] == nil)
        _ = try await alice.flush("team")
        #expect(try alice.node.store.outboxStatus(roomID: "team", senderKey: alice.node.identity.signingKeyBase64).priority == .normal)
        _ = try await bob.sync("team")
        #expect(try item(bob, urgent.eventID).priority == .urgent)
        #expect(try item(bob, urgent.eventID).body == "the server is down")
        #expect(try item(bob, quiet.eventID).priority == .low)
        #expect(try item(bob, plain.eventID).priority == .normal)
        #expect(JSONOutput.item(try item(bob, urgent.eventID))["priority"]?.stringValue == "urgent")
        #expect(JSONOutput.item(try item(bob, plain.eventID))["priority"] == nil)

        func found(_ priority: String) throws -> [String] {
            try bob.node.query(EventQuery(parameters: [("room", "team"), ("priority", priority)])).hits.map(\.event.eventID)
        }
        #expect(try found("urgent") == [urgent.eventID])
        #expect(try found("low") == [quiet.eventID])
        #expect(try found("high") == [])
        // Normal: the messages without one, and no other type of event.
        let normal = try found("normal")
        #expect(normal.contains(plain.eventID) && !normal.contains(urgent.eventID) && !normal.contains(quiet.eventID))
        #expect(throws: StoreError.self) { try EventQuery(parameters: [("priority", "asap")]) }
        // The planner reads the partial index for a priority other than normal.
        let plan = try await bob.node.store.pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE e.room_id = 'team' AND \(EventStore.priorityExpression) IS NOT NULL
                        AND \(EventStore.priorityExpression) = 'urgent' ORDER BY e.room_id, e.timestamp_ms, e.seq, e.event_id, e.sender_key
                    """
            ).map { $0["detail"] as String }.joined(separator: "\n")
        }
        #expect(plan.contains("events_priority"), "\(plan)")
    }

    @Test func `a forward is checked against the original where it is held, and a forged one shows as not matching`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        _ = try await alice.createRoom("notes", bucket: world.url, name: "Notes")
        let secret = try alice.node.send("notes", text: "the plan, privately").event
        let said = try alice.node.send("team", text: "meet at five").event
        _ = try alice.node.edit("team", eventID: said.eventID, text: "meet at six")
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")

        // Bob forwards what alice's message shows now (its edit); alice's node holds the original and checks it.
        let forward = try bob.node.forward(eventID: said.eventID, to: "team", priority: .high).event
        let reference = try #require(try item(bob, forward.eventID).forwarded)
        #expect(reference.reference == ForwardReference(eventID: said.eventID, hash: said.computeHash(), senderID: "alice"))
        #expect(reference.text == "meet at six" && reference.check == .matches)
        // Alice forwards her private note into the room: bob does not hold the original.
        let fromNotes = try alice.node.forward(eventID: secret.eventID, to: "team").event
        // A forged forward: bob claims alice said what she did not, naming her real message.
        var forged = JSONObject(["msgtype": "text", "body": "meet at midnight"])
        forged["forwarded"] = .object(ForwardReference(eventID: said.eventID, hash: said.computeHash(), senderID: "alice").jsonObject)
        let lie = try bob.node.publish(roomID: "team", type: EventType.message, content: forged)
        var wrongHash = forged
        wrongHash["body"] = "meet at six"
        wrongHash["forwarded"] = .object(ForwardReference(eventID: said.eventID, hash: String(repeating: "0", count: 64), senderID: "alice").jsonObject)
        let badHash = try bob.node.publish(roomID: "team", type: EventType.message, content: wrongHash)
        var wrongSender = wrongHash
        wrongSender["forwarded"] = .object(ForwardReference(eventID: said.eventID, hash: said.computeHash(), senderID: "bob").jsonObject)
        let badSender = try bob.node.publish(roomID: "team", type: EventType.message, content: wrongSender)
        _ = try await alice.flush("team")
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        _ = try await bob.sync("team")

        #expect(try item(alice, forward.eventID).forwarded?.check == .matches)
        #expect(try item(alice, forward.eventID).priority == .high)
        #expect(try item(alice, fromNotes.eventID).forwarded?.check == .matches)
        #expect(try item(bob, fromNotes.eventID).forwarded?.check == .unavailable)
        for event in [lie, badHash, badSender] { #expect(try item(alice, event.event.eventID).forwarded?.check == .differs) }
        let shown = try #require(JSONOutput.item(try item(alice, lie.event.eventID))["forwarded"]?.objectValue)
        #expect(shown["check"]?.stringValue == "differs" && shown["sender_id"]?.stringValue == "alice")
        // Once the original is gone (redacted), nothing is left to compare.
        _ = try alice.node.redact("team", eventID: said.eventID, reason: nil)
        #expect(try item(alice, forward.eventID).forwarded?.check == .unavailable)
    }

    @Test func `forwarding refuses what it cannot carry faithfully, each time saying what to do`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        _ = try await alice.createRoom("sealed", bucket: world.url, name: "Sealed")
        _ = try alice.node.enableEncryption("sealed", .epochs(history: .shared))
        let hidden = try alice.node.send("sealed", text: "for members only").event
        func refusal(_ body: () throws -> Void) -> ClientError? {
            do {
                try body()
                return nil
            } catch { return error as? ClientError }
        }
        let clear = refusal { _ = try alice.node.forward(eventID: hidden.eventID, to: "team") }
        #expect(clear?.code == .invalidArgument && clear?.remedy?.contains("--allow-clear") == true)
        #expect(try alice.node.forward(eventID: hidden.eventID, to: "team", allowClear: true).event.content?["body"]?.stringValue == "for members only")
        #expect(
            refusal { _ = try alice.node.forward(eventID: "team::20261205T000000.000Z::34f3715e-36de-43e2-9307-24174c0be1aa", to: "team") }?.code
                == .unknownEvent)
        let name = try alice.node.setName("team", "Team!").event
        #expect(refusal { _ = try alice.node.forward(eventID: name.eventID, to: "team") }?.code == .invalidArgument)
        let gone = try alice.node.send("team", text: "oops").event
        _ = try alice.node.redact("team", eventID: gone.eventID, reason: nil)
        #expect(refusal { _ = try alice.node.forward(eventID: gone.eventID, to: "team") }?.code == .invalidArgument)

        // A file whose blocks this node does not hold cannot be forwarded; once downloaded, it can, blocks and all.
        let path = world.directory.file("report.txt")
        try Data("quarterly report".utf8).write(to: URL(fileURLWithPath: path))
        let shared = try alice.node.shareFile("team", path: path).event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        let missing = refusal { _ = try bob.node.forward(eventID: shared.eventID, to: "team") }
        #expect(missing?.remedy?.contains("parley download") == true)
        let file = try bob.node.fileAttachment(eventID: shared.eventID)
        try await bob.node.download(file, from: try bob.blockSource("team"), to: world.directory.file("got.txt"))
        let forwarded = try bob.node.forward(eventID: shared.eventID, to: "team").event
        #expect(try item(bob, forwarded.eventID).file?.reference == (try item(bob, shared.eventID).file?.reference))
    }
}
