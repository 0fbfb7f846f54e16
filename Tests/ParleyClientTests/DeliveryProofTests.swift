import Foundation
import ParleyCore
import ParleyStore
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// Delivery proofs (docs/PROTOCOL.md §10.1): exported by the node that holds a message and its receipts, checked by
/// anyone from the file alone, and refused when anything in them is forged, missing or about something else.
@Suite struct DeliveryProofTests {
    /// Alice's message, Bob's delivered receipt for it, and chatter around it; both nodes synced.
    func deliveredRoom(encrypted: Bool = false) async throws -> (world: BucketWorld, alice: BucketClient, bob: BucketClient, message: Event) {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        if encrypted {
            _ = try alice.node.enableEncryption("team", .epochs(history: .shared))
            _ = try await alice.flush("team")
            _ = try await bob.sync("team")
        }
        aliceClock.advance(1_000)
        _ = try alice.node.send("team", text: "before")
        let message = try alice.node.send("team", text: "the contract is signed").event
        _ = try await alice.flush("team")
        bobClock.ms = aliceClock.ms + 2_000
        _ = try bob.node.send("team", text: "bob's own news")
        _ = try await bob.sync("team")
        guard case .sent = try bob.node.acknowledgeDelivery("team") else { throw TestFailure("Bob sent no receipt") }
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        aliceClock.advance(1_000)
        _ = try alice.node.send("team", text: "after")
        _ = try alice.node.setName("team", "Renamed later")
        return (world, alice, bob, message)
    }

    func check(_ lines: [[UInt8]]) throws -> DeliveryProofReport {
        var reader = JSONLReader(bytes: Array(lines.dropFirst()).flatMap { $0 + [0x0A] }, maxLineBytes: Event.maxWireBytes)
        return try DeliveryProofChecker.check(headerLine: lines[0], events: &reader)
    }

    func events(_ lines: [[UInt8]]) throws -> [Event] { try lines.dropFirst().map { try Event.parse($0) } }

    @Test func `a proof of a delivered message checks out with nothing but its file, and carries only the content it needs`() async throws {
        let (world, alice, bob, message) = try await deliveredRoom()
        let (lines, receipts) = try alice.node.deliveryProof(eventID: message.eventID)
        #expect(receipts.map(\.readerID) == ["bob"] && receipts.map(\.kind) == [.delivered])
        let report = try check(lines)
        #expect(report.isValid, "\(report.problems)")
        #expect(report.event?.eventID == message.eventID && report.creation?.creatorID == "alice")
        #expect(report.opened?.content["body"]?.stringValue == "the contract is signed")
        #expect(report.confirmations.map(\.readerKey) == [bob.node.identity.signingKeyBase64])
        // The room's state and the message and receipt carry content; chatter is stripped, and what came after the
        // receipt's head is not there at all.
        let carried = try events(lines)
        for event in carried where event.content != nil {
            #expect(EventType.isReplayed(event.type) || event.eventID == message.eventID || event.type == EventType.receipt, "\(event.type)")
        }
        #expect(carried.contains { $0.type == EventType.message && $0.content == nil })
        #expect(!carried.contains { $0.timestampMs > (report.confirmations.first?.timestampMs ?? 0) && $0.senderKey == message.senderKey })
        #expect(!carried.contains { $0.type == EventType.name && $0.timestampMs > message.timestampMs }, "state after the receipts is left out")
        withExtendedLifetime(world) {}
    }

    @Test func `in an encrypted room a proof opens the message and its sealed receipt, and --keep-sealed leaves the message closed`() async throws {
        let (world, alice, _, message) = try await deliveredRoom(encrypted: true)
        #expect(message.type == EventType.encrypted)
        let (lines, _) = try alice.node.deliveryProof(eventID: message.eventID)
        let report = try check(lines)
        #expect(report.isValid, "\(report.problems)")
        #expect(report.opened?.content["body"]?.stringValue == "the contract is signed")
        #expect(try DeliveryProofHeader(parsing: lines[0]).messageKeys.count == 2)

        let (sealedLines, _) = try alice.node.deliveryProof(eventID: message.eventID, keepSealed: true)
        let sealed = try check(sealedLines)
        #expect(sealed.isValid && sealed.opened == nil && sealed.confirmations.map(\.readerID) == ["bob"])
        #expect(try DeliveryProofHeader(parsing: sealedLines[0]).messageKeys.count == 1)
        withExtendedLifetime(world) {}
    }

    @Test func `a message no other device has acknowledged has no proof yet`() async throws {
        let (world, alice, _, _) = try await deliveredRoom()
        let unacknowledged = try alice.node.send("team", text: "not yet seen").event
        #expect(throws: ClientError.self) { try alice.node.deliveryProof(eventID: unacknowledged.eventID) }
        withExtendedLifetime(world) {}
    }

    @Test func `forged, cut, misdirected or padded proofs are refused with a reason`() async throws {
        let (world, alice, _, message) = try await deliveredRoom(encrypted: true)
        let (lines, _) = try alice.node.deliveryProof(eventID: message.eventID)
        let carried = try events(lines)
        let receiptID = try #require(try check(lines).confirmations.first?.receiptEventID)
        let receiptIndex = try #require(carried.firstIndex { $0.eventID == receiptID }) + 1
        func refused(_ forged: [[UInt8]], _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let report = try check(forged)
            #expect(!report.isValid, "accepted: \(reason)", sourceLocation: sourceLocation)
            #expect(report.problems.contains { $0.contains(reason) }, "\(report.problems)", sourceLocation: sourceLocation)
        }

        // A receipt whose bytes were changed no longer verifies.
        var altered = lines
        altered[receiptIndex] = Array(
            String(decoding: lines[receiptIndex], as: UTF8.self).replacingOccurrences(of: "ciphertext\":\"", with: "ciphertext\":\"A").utf8)
        try refused(altered, "invalid event")

        // An event taken out of a chain leaves a gap the rest cannot be chained across.
        let middle = try #require(carried.firstIndex { $0.senderKey == message.senderKey && $0.seq == message.seq - 1 }) + 1
        try refused(Array(lines[..<middle] + lines[(middle + 1)...]), "gap")

        // Without Bob's receipt nothing covers the message; a receipt signed by a device never in the room does not count.
        var mallory = TestDevice("mallory")
        let head = ReceiptHead(position: ChainPosition(message), hash: try DeliveryProofHeader(parsing: lines[0]).eventHash)
        let forged = mallory.sign(
            "team", EventType.receipt,
            JSONObject(["receipt_type": "delivered", "event_id": .string(message.eventID), "heads": .array([head.jsonValue])]),
            at: message.timestampMs + 10)
        var withoutBob = lines
        withoutBob.remove(at: receiptIndex)
        try refused(withoutBob + [forged.wire], "no receipt of another device")

        // The header names an event the proof's receipts do not cover (Bob's own message), or one it does not hold.
        var header = try DeliveryProofHeader(parsing: lines[0])
        let receipt = carried[receiptIndex - 1]
        header.eventHash = try #require(
            carried.first { $0.senderKey == receipt.senderKey && $0.seq == receipt.seq - 1 && $0.type == EventType.encrypted }.map { $0.computeHash() })
        try refused([CanonicalJSON.encode(header.jsonValue)] + lines.dropFirst(), "no receipt of another device")
        header.eventHash = String(repeating: "0", count: 64)
        try refused([CanonicalJSON.encode(header.jsonValue)] + lines.dropFirst(), "does not hold the event")

        // A key that is not the message's.
        header = try DeliveryProofHeader(parsing: lines[0])
        header.messageKeys[0].key = try MessageKey(bytes: Array(repeating: 7, count: 32))
        try refused([CanonicalJSON.encode(header.jsonValue)] + lines.dropFirst(), "does not open")

        // A proof longer than the bound is refused unread past it.
        var reader = JSONLReader(bytes: Array(lines.dropFirst()).flatMap { $0 + [0x0A] }, maxLineBytes: Event.maxWireBytes)
        let long = try DeliveryProofChecker.check(headerLine: lines[0], events: &reader, maxEvents: 5)
        #expect(!long.isValid && long.problems.first == "the proof has more than 5 events; not read further")

        // Events of another room, and headers that are not a proof's.
        let elsewhere = mallory.message("elsewhere", "hello", at: message.timestampMs)
        try refused(lines + [elsewhere.wire], "an event of room elsewhere")
        for junk in [
            #"{"format":"parley.delivery_proof.v9","room_id":"team","event_hash":"00","message_keys":[]}"#, "[1]", #"{"format":"parley.delivery_proof.v1"}"#,
        ] {
            try refused([Array(junk.utf8)] + lines.dropFirst(), "line 1")
        }
        withExtendedLifetime(world) {}
    }
}

/// docs/vectors/receipts.json's `proofs`, written by the independent generator.
@Suite struct DeliveryProofVectorTests {
    @Test func `the vectors' proofs are accepted or refused as they say, with the confirmations they name`() throws {
        let vectors = try Vectors.load("receipts.json")
        let proofs = vectors["proofs"]?.array ?? []
        #expect(proofs.count >= 7)
        for proof in proofs {
            let name = proof["name"]?.text ?? ""
            let lines = (proof["lines"]?.array ?? []).map { Array($0.text.utf8) }
            var reader = JSONLReader(bytes: Array(lines.dropFirst()).flatMap { $0 + [0x0A] }, maxLineBytes: Event.maxWireBytes)
            let report = try DeliveryProofChecker.check(headerLine: lines[0], events: &reader)
            #expect(report.isValid == (proof["valid"] == .bool(true)), "\(name): \(report.problems)")
            if let problem = proof["problem"]?.text {
                #expect(report.problems.contains { $0.contains(problem) }, "\(name): \(report.problems)")
            }
            let wanted = (proof["confirmations"]?.array ?? []).map {
                "\($0["reader_id"]?.text ?? "") \($0["reader_key"]?.text ?? "") \($0["kind"]?.text ?? "") \($0["timestamp_ms"]?.integerValue ?? 0)"
            }
            if proof["valid"] == .bool(true) {
                #expect(report.confirmations.map { "\($0.readerID) \($0.readerKey) \($0.kind.rawValue) \($0.timestampMs)" } == wanted, "\(name)")
            }
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite(.serialized) struct DeliveryProofCLITests {
    @Test func `parley receipts exports a proof that parley verify accepts anywhere, and refuses one about a room made up under the same id`() throws {
        let nodes = try TwoNodes()
        try nodes.shareBucketRoom("team")
        try #require(try nodes.alice.run(["sync"]).status == 0)
        let sent = try nodes.alice.run(["send", "team", "proof \u{1B}[31mred", "--json"])
        let eventID = try JSONParser().parse(Array(sent.stdout.utf8))["event_id"]!.text
        let proof = nodes.directory.file("proof.jsonl")

        let none = try nodes.alice.run(["receipts", eventID])
        #expect(none.status == 0 && none.stdout.contains("no other device's receipt covers"))
        let early = try nodes.alice.run(["receipts", eventID, "--export", proof])
        #expect(early.status == 1 && early.stderr.contains("No other device's receipt covers"))
        #expect(!FileManager.default.fileExists(atPath: proof))

        try #require(try nodes.alice.run(["sync"]).status == 0)
        try #require(try nodes.bob.run(["sync"]).status == 0)
        try #require(try nodes.alice.run(["sync"]).status == 0)
        let exported = try nodes.alice.run(["receipts", eventID, "--export", proof])
        try #require(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout.contains("delivered by bob device") && exported.stdout.contains("Wrote a delivery proof"))
        #expect((try FileManager.default.attributesOfItem(atPath: proof)[.posixPermissions] as? Int) == 0o600)
        #expect(try nodes.alice.run(["receipts", eventID, "--export", proof]).status == 1, "an existing file is not replaced")

        // Checked by Bob's node (which holds the room), and with no node at all.
        let checked = try nodes.bob.run(["verify", proof, "--utc"])
        #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")
        #expect(checked.stdout.contains("delivered by bob (device \(nodes.bobKey))") && checked.stdout.contains("OK:"))
        #expect(checked.stdout.contains("text: proof \\x1b[31mred") && !checked.stdout.contains("\u{1B}"), "\(checked.stdout)")
        let nowhere = try ParleyCommand.run(["--home", nodes.directory.file("nobody"), "verify", proof, "--json"])
        #expect(nowhere.status == 0, "\(nowhere.stderr)")
        let json = try JSONParser().parse(Array(nowhere.stdout.utf8))
        #expect(json["valid"] == JSONValue.bool(true) && json["confirmations"]?.arrayValue?.first?["user_id"]?.text == "bob")

        // Mallory makes up a room named team, with her own alice and bob, and a proof about it: every signature holds,
        // but a node that holds the real room sees another creation.
        var fakeAlice = TestDevice("alice", keyName: "fake alice")
        var fakeBob = TestDevice("bob", keyName: "fake bob")
        let t = Int64(1_760_000_000_000)
        let founding = fakeAlice.create("team", at: t)
        let inviteBob = fakeAlice.invite("team", fakeBob, at: t + 2)
        let bobJoin = fakeBob.join("team", at: t + 3)
        let message = fakeAlice.message("team", "I never said that", at: t + 4)
        let receipt = fakeBob.sign(
            "team", EventType.receipt,
            JSONObject([
                "receipt_type": "delivered", "event_id": .string(message.event.eventID),
                "heads": .array([ReceiptHead(position: ChainPosition(message.event), hash: message.hash).jsonValue]),
            ]), at: t + 5)
        let header = DeliveryProofHeader(roomID: "team", eventHash: message.hash, messageKeys: [])
        let fake = nodes.directory.file("fake.jsonl")
        let fakeEvents: [VerifiedEvent] = founding + [inviteBob, bobJoin, message, receipt]
        let fakeLines: [[UInt8]] = [CanonicalJSON.encode(header.jsonValue)] + fakeEvents.map(\.wire)
        try Data(fakeLines.flatMap { $0 + [0x0A] }).write(to: URL(fileURLWithPath: fake))
        let refused = try nodes.alice.run(["verify", fake])
        #expect(refused.status == 1 && refused.stdout.contains("another creation") && refused.stdout.contains("FAILED"), "\(refused.stdout)")
    }
}
