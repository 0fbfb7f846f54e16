import Foundation
import Logging
import ParleyCore
import ParleyStore
import ParleySync
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// Delivery tracking from signed receipts (docs/PROTOCOL.md §7.10): a message's state per recipient device, the
/// automatic delivered receipts and their pacing, and receipts that must not count.
@Suite struct DeliveryTests {
    func recipient(_ report: DeliveryReport, _ client: BucketClient) throws -> RecipientStatus {
        try #require(report.recipients.first { $0.deviceKey == client.node.identity.signingKeyBase64 })
    }

    @Test func `a message goes from pending to in transit, delivered and read for the other member's device`() async throws {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        aliceClock.advance(1_000)
        let message = try alice.node.send("team", text: "did you get this?").event
        #expect(try recipient(alice.node.deliveryStatus("team", eventID: message.eventID), bob).state == .pending)
        _ = try await alice.flush("team")
        let sent = try alice.node.deliveryStatus("team", eventID: message.eventID)
        #expect(try recipient(sent, bob).state == .inTransit && sent.confirmations.map(\.transport) == ["bucket"])

        bobClock.ms = aliceClock.ms + 5_000
        _ = try await bob.sync("team")
        guard case .sent(let receipt) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("no receipt")
            return
        }
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        let delivered = try recipient(alice.node.deliveryStatus("team", eventID: message.eventID), bob)
        #expect(delivered.state == .delivered && delivered.deliveredMs == receipt.event.timestampMs && delivered.readMs == nil)
        // Receipts do not answer receipts: Alice has nothing to acknowledge.
        guard case .upToDate = try alice.node.acknowledgeDelivery("team") else {
            Issue.record("Alice acknowledged a receipt")
            return
        }

        bobClock.advance(60_000)
        try bob.node.receipt("team", eventID: message.eventID, kind: .read)
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        let read = try alice.node.deliveryStatus("team", eventID: message.eventID)
        #expect(try recipient(read, bob).state == .read && read.overall == .read)
        #expect(try recipient(read, bob).readMs == bobClock.ms)
    }

    @Test func `a read receipt of older messages, sent after a new one arrived, does not stand in for its delivered receipt`() async throws {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        let older = try alice.node.send("team", text: "older").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        guard case .sent = try bob.node.acknowledgeDelivery("team") else { throw TestFailure("no first receipt") }
        aliceClock.advance(5_000)
        bobClock.ms = aliceClock.ms
        let newer = try alice.node.send("team", text: "newer").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        // Bob's page shows the older message only, and says so: a read receipt up to it, stored after the newer one.
        _ = try bob.node.markRead("team", eventID: older.eventID, paced: false)
        #expect(try bob.node.store.hasUnacknowledgedContent(roomID: "team", readerKey: bob.node.identity.signingKeyBase64))
        bobClock.advance(10_000)
        guard case .sent(let receipt) = try bob.node.acknowledgeDelivery("team") else { throw TestFailure("the newer message was never acknowledged") }
        guard let content = receipt.event.content,
            case .receipt(.delivered, _, let heads) = try EventContent.parse(type: receipt.event.type, content: content, roomID: "team")
        else { throw TestFailure("not a delivered receipt") }
        #expect(heads.map(\.position) == [ChainPosition(newer)])
        // Covered now: nothing more to send.
        #expect(try !bob.node.store.hasUnacknowledgedContent(roomID: "team", readerKey: bob.node.identity.signingKeyBase64))
    }

    @Test func `automatic receipts are paced, and the one that was held back covers what came meanwhile`() async throws {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        let first = try alice.node.send("team", text: "one").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        guard case .sent(let firstReceipt) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("no receipt")
            return
        }
        // Nothing new: nothing to send.
        guard case .upToDate = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("a receipt with nothing new")
            return
        }

        aliceClock.advance(100)
        let second = try alice.node.send("team", text: "two").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        guard case .due(let atMs) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("not paced")
            return
        }
        // Two devices: 2 s after the previous receipt (dated after the room's newest event, so perhaps a little after
        // Bob's clock), plus this device's fixed share of up to a quarter of it.
        let previous = firstReceipt.event.timestampMs
        #expect((previous + 2_000...previous + 2_500).contains(atMs) && atMs > bobClock.ms)
        bobClock.ms = atMs
        guard case .sent(let receipt) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("no receipt when due")
            return
        }
        guard let content = receipt.event.content,
            case .receipt(.delivered, _, let heads) = try EventContent.parse(type: receipt.event.type, content: content, roomID: "team")
        else {
            Issue.record("not a receipt")
            return
        }
        // Only the chain that moved on since the first receipt, to Alice's second message.
        #expect(heads.map(\.position) == [ChainPosition(second)])
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        for event in [first, second] {
            #expect(try recipient(alice.node.deliveryStatus("team", eventID: event.eventID), bob).state == .delivered)
        }
    }

    @Test func `a read marked while the pace holds receipts back is sent when due, and with read receipts off never, though unread counts follow`() async throws
    {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        let first = try alice.node.send("team", text: "one").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        #expect(try bob.node.markRead("team", eventID: first.eventID) != nil)
        aliceClock.advance(100)
        let second = try alice.node.send("team", text: "two").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        // Within the pace: marked here (nothing unread), the receipt waits, and goes as a read receipt when due.
        #expect(try bob.node.markRead("team", eventID: second.eventID) == nil)
        #expect(try bob.node.roomSummary("team").unread == 0)
        guard case .due(let atMs) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("not paced")
            return
        }
        bobClock.ms = atMs
        guard case .sent(let receipt) = try bob.node.acknowledgeDelivery("team"), let content = receipt.event.content,
            case .receipt(.read, second.eventID, _) = try EventContent.parse(type: receipt.event.type, content: content, roomID: "team")
        else {
            Issue.record("no read receipt when due")
            return
        }
        // An older message shown later moves nothing back, and sends nothing.
        #expect(try bob.node.markRead("team", eventID: first.eventID, paced: false) == nil)
        #expect(try bob.node.store.readPreferences(roomID: "team").readMarker == second.eventID)

        // Off: reading moves the unread count here only; Alice sees DELIVERED, never READ.
        try bob.node.setReadReceipts("team", enabled: false)
        #expect(try bob.node.sendsReadReceipts("team") == false)
        aliceClock.advance(100_000)
        let third = try alice.node.send("team", text: "three").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        #expect(try bob.node.roomSummary("team").unread == 1)
        bobClock.advance(100_000)
        #expect(try bob.node.markRead("team", eventID: third.eventID, paced: false) == nil)
        #expect(try bob.node.roomSummary("team").unread == 0)
        guard case .sent(let delivered) = try bob.node.acknowledgeDelivery("team"), let content = delivered.event.content,
            case .receipt(.delivered, _, _) = try EventContent.parse(type: delivered.event.type, content: content, roomID: "team")
        else {
            Issue.record("no delivered receipt")
            return
        }
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        #expect(try recipient(alice.node.deliveryStatus("team", eventID: third.eventID), bob).state == .delivered)
        #expect(try recipient(alice.node.deliveryStatus("team", eventID: second.eventID), bob).state == .read)
    }

    @Test func `a running node acknowledges what arrives without being asked`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        let bobNode = world.client(try Node(home: bob.node.home))
        let runner = NodeRunner(client: bobNode, settings: NodeRunner.Settings(), observer: ArchiveWatcher(), logger: Logger(label: "parley.test"))
        let message = try alice.node.send("team", text: "are you running?").event
        _ = try await alice.flush("team")
        var state = DeliveryState.pending
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await runner.run() }
            let deadline = ContinuousClock.now + .seconds(30)
            while state != .delivered && ContinuousClock.now < deadline {
                _ = try await alice.sync("team")
                state = try recipient(alice.node.deliveryStatus("team", eventID: message.eventID), bob).state
                if state != .delivered { try await Task.sleep(for: .milliseconds(100)) }
            }
            runner.shutDown()
            try await group.waitForAll()
        }
        #expect(state == .delivered)
    }

    @Test func `the pace of automatic receipts grows with the square of the room's devices`() {
        #expect(Node.receiptIntervalMs(devices: 2) == 2_000)
        #expect(Node.receiptIntervalMs(devices: 10) == 20_000)
        #expect(Node.receiptIntervalMs(devices: 100) == 2_000_000)
        #expect(Node.receiptIntervalMs(devices: 1_000) == 3_600_000)
    }

    @Test func `sealed receipts in an encrypted room count once opened`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        _ = try alice.node.enableEncryption("team", .epochs(history: .shared))
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        let message = try alice.node.send("team", text: "secret").event
        #expect(message.type == EventType.encrypted)
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        guard case .sent(let receipt) = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("no receipt")
            return
        }
        #expect(receipt.event.type == EventType.encrypted)
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        #expect(try recipient(alice.node.deliveryStatus("team", eventID: message.eventID), bob).state == .delivered)
    }

    @Test func `receipts from a non-member, about another event at the same place, or beyond what was sent, prove nothing`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        let message = try alice.node.send("team", text: "to bob only").event
        _ = try await alice.flush("team")
        let now = alice.node.clock()
        // Mallory, never a member, claims to have received it.
        var mallory = TestDevice("mallory")
        let rightHead = ReceiptHead(
            position: ChainPosition(message), hash: try #require(try alice.node.store.chainHead(roomID: "team", senderKey: message.senderKey)).hash)
        let forged = mallory.sign(
            "team", EventType.receipt,
            JSONObject(["receipt_type": "delivered", "event_id": .string(message.eventID), "heads": .array([rightHead.jsonValue])]), at: now + 1)
        _ = try alice.node.store.ingest(events: [forged], receivedMs: now)
        #expect(try alice.node.store.event(eventID: forged.event.eventID)?.status == .rejected)

        // Bob, a member, names Alice's chain at the right place with the hash of some other event, and at a place
        // her chain never reached.
        _ = try await bob.sync("team")
        let wrongHash = ReceiptHead(position: ChainPosition(message), hash: String(repeating: "ab", count: 32))
        let beyond = ReceiptHead(position: ChainPosition(senderKey: message.senderKey, seq: message.seq + 50), hash: rightHead.hash)
        for head in [wrongHash, beyond] {
            try bob.node.publish(
                roomID: "team", type: EventType.receipt,
                content: JSONObject(["receipt_type": "delivered", "event_id": .string(message.eventID), "heads": .array([head.jsonValue])]))
        }
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        let report = try alice.node.deliveryStatus("team", eventID: message.eventID)
        #expect(report.recipients.map(\.userID) == ["bob"])
        #expect(try recipient(report, bob).state == .inTransit)
    }

    @Test func `metrics give delivery latency per transport, pairs by state, failing rooms and block bytes, in Prometheus text`() async throws {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        aliceClock.advance(10_000)
        for index in 0..<3 {
            aliceClock.advance(1_000)
            _ = try alice.node.send("team", text: "message \(index)")
        }
        let path = world.directory.file("notes.bin")
        try Data(repeating: 7, count: 100_000).write(to: URL(fileURLWithPath: path))
        let before = BlockTraffic.totals()
        aliceClock.advance(1_000)
        _ = try alice.node.shareFile("team", path: path)
        _ = try await alice.flush("team")
        // Other tests move blocks in this process too: at least this file's two 64 KiB blocks and its root went up.
        #expect(BlockTraffic.totals().up - before.up >= 2 * 65_536 + 1_024)
        bobClock.ms = aliceClock.ms + 4_000
        _ = try await bob.sync("team")
        guard case .sent = try bob.node.acknowledgeDelivery("team") else {
            Issue.record("no receipt")
            return
        }
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        aliceClock.advance(1_000)
        _ = try alice.node.send("team", text: "not yet seen")
        let file = try #require(try bob.node.timeline("team", limit: 10).compactMap(\.file).first)
        let fetchedBefore = BlockTraffic.totals().down
        try await bob.node.download(file, from: try bob.blockSource("team"), to: world.directory.file("fetched.bin"))
        #expect(BlockTraffic.totals().down - fetchedBefore >= 2 * 65_536 + 1_024)

        let metrics = try alice.node.metrics()
        // Four messages (three texts, the file) delivered 4 to 7 s after they were sent; one awaits.
        #expect(metrics.latenciesMs["bucket"]?.sorted() == [4_000, 5_000, 6_000, 7_000])
        #expect(metrics.pairs["bucket"] == ["awaiting": 1, "delivered": 4, "read": 0])
        #expect(metrics.failingRooms.isEmpty)
        let text = metrics.text
        for line in [
            "parley_node_delivery_latency_seconds{transport=\"bucket\",quantile=\"0.5\"} 5",
            "parley_node_delivery_latency_seconds{transport=\"bucket\",quantile=\"0.99\"} 7",
            "parley_node_delivery_latency_seconds_count{transport=\"bucket\"} 4", "parley_node_delivery_latency_seconds_sum{transport=\"bucket\"} 22",
            "parley_node_message_deliveries{transport=\"bucket\",state=\"awaiting\"} 1",
            "# TYPE parley_node_block_bytes_total counter",
        ] {
            #expect(text.contains(line + "\n"), "\(line)\n\(text)")
        }
        #expect(!text.contains("team") && !text.contains("alice") && !text.contains("bob"), "no room or user in metrics")

        // A bucket that failed three times in a row counts by the error's code, not its text.
        for _ in 0..<3 {
            try alice.node.store.recordSendFailure(.bucket, roomID: "team", reason: "/home/alice/bucket: permission denied", code: "io", nowMs: 1)
        }
        let failing = try alice.node.metrics()
        #expect(failing.failingRooms == ["bucket": ["io": 1]])
        #expect(failing.text.contains("parley_node_failing_rooms{transport=\"bucket\",reason=\"io\"} 1\n") && !failing.text.contains("permission"))
    }

    @Test func `receipt heads are checked: one per chain, at most 256, each with a place and a hash`() throws {
        let key = TestDevice("alice").publicKey
        func parse(_ heads: JSONValue) throws -> EventContent {
            try EventContent.parse(
                type: EventType.receipt,
                content: JSONObject(["receipt_type": "read", "event_id": "team::20251009T085320.123Z::34f3715e-36de-43e2-9307-24174c0be1aa", "heads": heads]),
                roomID: "team")
        }
        let head: JSONValue = ["sender_key": .string(key), "seq": 3, "hash": .string(String(repeating: "0f", count: 32))]
        guard case .receipt(.read, _, let heads) = try parse([head]) else {
            Issue.record("not a receipt")
            return
        }
        #expect(heads == [ReceiptHead(position: ChainPosition(senderKey: key, seq: 3), hash: String(repeating: "0f", count: 32))])
        let bad: [JSONValue] = [
            [], [head, head], .array(Array(repeating: head, count: 257)),
            ["sender_key": .string(key), "seq": 0, "hash": .string(String(repeating: "0f", count: 32))],
            ["sender_key": .string(key), "seq": 3, "hash": .string(String(repeating: "0F", count: 32))],
            ["sender_key": .string(key), "seq": 3], ["sender_key": "AAAA", "seq": 3, "hash": .string(String(repeating: "0f", count: 32))],
            ["sender_key": .string(key), "seq": 3, "hash": .string(String(repeating: "0f", count: 32)), "extra": 1], "not an array",
        ].map { value in value.arrayValue != nil || value.stringValue != nil ? value : [value] }
        for heads in bad {
            #expect(throws: ContentError.self) { try parse(heads) }
        }
    }
}

@Suite(.serialized) struct DeliveryCLITests {
    @Test func `parley status shows a message pending, in transit, then delivered and read by the other member, in text and JSON`() throws {
        let nodes = try TwoNodes()
        try nodes.shareBucketRoom("team")
        try #require(try nodes.alice.run(["sync"]).status == 0)
        let sent = try nodes.alice.run(["send", "team", "are you there?", "--json"])
        let eventID = try JSONParser().parse(Array(sent.stdout.utf8))["event_id"]!.text
        let short = String(eventID.split(separator: ":").last!.prefix(8))
        func status() throws -> JSONValue {
            let run = try nodes.alice.run(["status", eventID, "--json"])
            try #require(run.status == 0, "\(run.stderr)")
            return try JSONParser().parse(Array(run.stdout.utf8))
        }
        func bob(_ report: JSONValue) -> JSONValue? { report["recipients"]?.arrayValue?.first { $0["user_id"]?.text == "bob" } }
        #expect(try status()["state"]?.text == "pending" && bob(try status())?["state"]?.text == "pending")
        #expect(try nodes.alice.run(["log", "team"]).stdout.contains("alice: are you there?  [pending]"))

        try #require(try nodes.alice.run(["sync"]).status == 0)
        let inTransit = try status()
        #expect(inTransit["state"]?.text == "in_transit" && inTransit["sent"]?.arrayValue?.first?["transport"]?.text == "bucket")
        // Bob's sync takes the message and answers with a delivered receipt at once; Alice's reads it.
        try #require(try nodes.bob.run(["sync"]).status == 0)
        try #require(try nodes.alice.run(["sync"]).status == 0)
        let delivered = try status()
        #expect(delivered["state"]?.text == "delivered" && bob(delivered)?["delivered_ms"]?.integerValue != nil && bob(delivered)?["read_ms"] == .null)
        #expect(try nodes.alice.run(["log", "team"]).stdout.contains("alice: are you there?  [delivered]"))

        try #require(try nodes.bob.run(["read", "team", short]).status == 0)
        try #require(try nodes.bob.run(["sync"]).status == 0)
        try #require(try nodes.alice.run(["sync"]).status == 0)
        let marked = try nodes.log(nodes.alice, "team").last { $0["event_id"]?.text == eventID }
        #expect(marked?["delivery"] == ["state": "read", "delivered": 1, "read": 1, "devices": 1], "\(String(describing: marked))")
        #expect(try nodes.alice.run(["log", "team"]).stdout.contains("alice: are you there?  [read]"))
        let text = try nodes.alice.run(["status", "team", short, "--utc"])
        #expect(text.status == 0)
        let lines = text.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("\(eventID) by this device at ") == true && lines.first?.hasSuffix(": READ") == true, "\(text.stdout)")
        #expect(lines.contains { $0.hasPrefix("sent: bucket at ") && $0.hasSuffix(" UTC") }, "\(text.stdout)")
        #expect(lines.contains { $0.hasPrefix("bob device ") && $0.contains(": READ, delivered ") && $0.contains(", read ") }, "\(text.stdout)")

        // Bob sees Alice's message as his node knows it: his own device has read it.
        let bobs = try nodes.bob.run(["status", eventID])
        #expect(
            bobs.status == 0 && bobs.stdout.contains("by alice at") && bobs.stdout.contains("bob device ") && bobs.stdout.contains(": READ"), "\(bobs.stdout)")
        let unknown = try nodes.alice.run(["status", "team", "ffffffff"])
        #expect(unknown.status == 1, "\(unknown.stderr)")
        let lone = try nodes.alice.run(["status", short])
        #expect(lone.status == 1 && lone.stderr.contains("Give the room too: parley status ROOM \(short)"), "\(lone.stderr)")

        // Bob turns his read receipts off: his next read is his own business.
        let off = try nodes.bob.run(["room", "read-receipts", "team", "off"])
        #expect(off.status == 0 && off.stdout == "read receipts in team: off\n", "\(off.stdout)")
        let later = try nodes.alice.run(["send", "team", "and this one?", "--json", "--flush"])
        let laterID = try JSONParser().parse(Array(later.stdout.utf8))["event_id"]!.text
        try #require(try nodes.bob.run(["sync"]).status == 0)
        let quiet = try nodes.bob.run(["read", "team", laterID])
        #expect(quiet.status == 0 && quiet.stdout.isEmpty && quiet.stderr.contains("read receipts are off in team"), "\(quiet.stderr)")
        // Bob's explicit read moments ago holds his next receipt back for the room's pace (2 s for two devices): his
        // syncs send the delivered receipt once it is due.
        var laterStatus: JSONValue = .null
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            try #require(try nodes.bob.run(["sync"]).status == 0)
            try #require(try nodes.alice.run(["sync"]).status == 0)
            laterStatus = try JSONParser().parse(Array(try nodes.alice.run(["status", laterID, "--json"]).stdout.utf8))
            if laterStatus["state"]?.text != "in_transit" { break }
        }
        #expect(laterStatus["state"]?.text == "delivered", "\(laterStatus)")
        #expect(try nodes.bob.run(["room", "read-receipts", "team", "maybe"]).status != 0)
    }
}
