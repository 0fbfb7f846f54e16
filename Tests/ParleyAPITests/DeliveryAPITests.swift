import Foundation
@_spi(Tools) import ParleyClient
import ParleyCore
import ParleyTesting
import Testing

/// Delivery through the local API: a message's status per device, and the stream telling when a receipt covers it.
@Suite struct DeliveryAPITests {
    @Test func `a receipt covering this device's message reaches the stream as delivered then acknowledged, and the status says so`() async throws {
        let fixture = try await APIFixture()
        var bob = TestDevice("bob")
        let now = fixture.node.clock()
        let invite = try fixture.node.invite("general", userID: "bob", key: bob.publicKey)
        _ = try fixture.node.store.ingest(events: [bob.join("general", at: invite.event.timestampMs + 1)], receivedMs: now)
        let sent = try await fixture.post("/v1/rooms/general/messages", ["text": "tell me you got it"])
        let eventID = try #require(sent.json?["event_id"]?.stringValue)
        let message = try #require(try fixture.node.store.event(eventID: eventID)).event.event
        let head = ReceiptHead(
            position: ChainPosition(message), hash: try #require(try fixture.node.store.chainHead(roomID: "general", senderKey: message.senderKey)).hash)
        let status = try await fixture.request(.GET, "/v1/rooms/general/events/\(eventID)/status")
        #expect(status.status == 200 && status.json?["state"]?.stringValue == "pending")

        let receipts = [("delivered", 2), ("read", 3)].map { kind, offset in
            bob.sign(
                "general", EventType.receipt,
                JSONObject(["receipt_type": .string(kind), "event_id": .string(eventID), "heads": .array([head.jsonValue])]),
                at: message.timestampMs + Int64(offset))
        }
        let messages = try await fixture.stream(
            opened: {
                for receipt in receipts {
                    _ = try fixture.node.store.ingest(events: [receipt], receivedMs: now)
                    try fixture.node.feed.catchUp()
                }
            },
            until: { all in all.contains { $0["type"]?.stringValue == "message:acknowledged" } })
        let delivered = try #require(messages.first { $0["type"]?.stringValue == "message:delivered" })
        #expect(delivered["event_ids"] == .array([.string(eventID)]) && delivered["user_id"]?.stringValue == "bob")
        #expect(delivered["device_key"]?.stringValue == bob.publicKey && delivered["at_ms"]?.integerValue == message.timestampMs + 2)
        let acknowledged = try #require(messages.first { $0["type"]?.stringValue == "message:acknowledged" })
        #expect(acknowledged["event_ids"] == .array([.string(eventID)]))

        let read = try await fixture.request(.GET, "/v1/rooms/general/events/\(eventID)/status")
        let recipient = try #require(read.json?["recipients"]?.arrayValue?.first)
        #expect(
            read.json?["state"]?.stringValue == "read" && recipient["user_id"]?.stringValue == "bob"
                && recipient["read_ms"]?.integerValue == message.timestampMs + 3)
        let missing = try await fixture.request(.GET, "/v1/rooms/general/events/nothing-like-an-id/status")
        #expect(missing.status == 400 || missing.status == 404)
    }
}
