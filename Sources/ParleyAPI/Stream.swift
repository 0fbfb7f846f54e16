import Foundation
import HummingbirdWebSocket
import ParleyClient

/// A stream's client stopped reading and fell more than the backlog behind.
struct StreamCutOff: Error {}

extension LocalAPI {
    /// Sends the node's activity as JSON text messages until the client closes, or cuts it off when it falls more than
    /// ``Settings/streamBacklog`` messages behind: a client that never reads costs the node a bounded backlog.
    func stream(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let subscription = node.feed.subscribe(backlog: settings.streamBacklog)
        counters.withLock { $0.openStreams += 1 }
        defer { counters.withLock { $0.openStreams -= 1 } }
        try await outbound.write(.text(CanonicalJSON.string(["type": "ready", "user_id": .string(node.identity.userID)])))
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await activity in subscription.activity {
                        for message in self.messages(for: activity) { try await outbound.write(.text(CanonicalJSON.string(message))) }
                    }
                }
                // A write blocked on a client that does not read is cancelled from here.
                group.addTask {
                    await subscription.waitUntilCutOff()
                    if subscription.wasCutOff { throw StreamCutOff() }
                }
                // The client's messages are not commands; reading them notices when it closes.
                group.addTask {
                    for try await _ in inbound.messages(maxSize: 1 << 16) {}
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch is StreamCutOff {
            counters.withLock { $0.streamsCutOff += 1 }
            logger.warning("WebSocket client cut off: it did not read", metadata: ["backlog": "\(settings.streamBacklog)"])
            throw StreamCutOff()
        }
    }

    /// The stream messages one activity becomes (docs/API.md, "The stream").
    func messages(for activity: NodeActivity) -> [JSONValue] {
        switch activity {
        case .events(let roomID, let events):
            var messages: [JSONValue] = []
            var roomChanged = false
            for event in events {
                if event.type == EventType.receipt {
                    messages.append([
                        "type": "receipt", "room_id": .string(roomID), "event_id": .string(event.eventID),
                        "target_event_id": event.targetEventID.map(JSONValue.string) ?? .null,
                    ])
                    if let notice = try? node.deliveryNotice(receiptRow: event.rowID) {
                        messages.append([
                            "type": .string(notice.kind == .read ? "message:acknowledged" : "message:delivered"), "room_id": .string(roomID),
                            "event_ids": .array(notice.eventIDs.map(JSONValue.string)), "user_id": .string(notice.readerID),
                            "device_key": .string(notice.readerKey), "at_ms": .integer(notice.atMs),
                        ])
                    }
                } else if let target = event.targetEventID, [EventType.edit, EventType.reaction, EventType.redaction].contains(event.type) {
                    var changed = items(target).filter { Timeline.itemTypes.contains($0.type) }
                    // A redacted edit or reaction changes the message it was on.
                    if event.type == EventType.redaction, let message = try? node.relationTarget(of: target) { changed += items(message) }
                    for item in changed { messages.append(["type": "item:changed", "room_id": .string(roomID), "item": JSONOutput.item(item)]) }
                } else if Timeline.itemTypes.contains(event.type) {
                    for item in items(event.eventID) { messages.append(["type": "item:new", "room_id": .string(roomID), "item": JSONOutput.item(item)]) }
                    roomChanged = roomChanged || EventType.isState(event.type)
                }
            }
            if roomChanged { messages.append(["type": "room:changed", "room_id": .string(roomID)]) }
            return messages
        case .sent(let roomID, let eventIDs, let transport):
            return [["type": "message:sent", "room_id": .string(roomID), "event_ids": .array(eventIDs.map(JSONValue.string)), "transport": .string(transport)]]
        case .sendFailed(let roomID, let eventIDs, let transport, let reason, let retryAtMs):
            return [
                [
                    "type": "message:failed", "room_id": .string(roomID), "event_ids": .array(eventIDs.map(JSONValue.string)), "transport": .string(transport),
                    "reason": .string(reason), "retry_at_ms": .integer(retryAtMs),
                ]
            ]
        case .synced(let roomID, let transport, let accepted, let problems):
            return [
                [
                    "type": "sync:done", "room_id": .string(roomID), "transport": .string(transport), "accepted": .integer(Int64(accepted)),
                    "problems": .integer(Int64(problems)),
                ]
            ]
        case .syncFailed(let roomID, let transport, let reason, let retryAtMs):
            return [
                [
                    "type": "sync:failed", "room_id": .string(roomID), "transport": .string(transport), "reason": .string(reason),
                    "retry_at_ms": .integer(retryAtMs),
                ]
            ]
        case .typing(let roomID, let userID, let isTyping):
            return [["type": "typing", "room_id": .string(roomID), "user_id": .string(userID), "typing": .bool(isTyping)]]
        case .receiptWaiting:
            return []
        }
    }

    /// The items carrying `eventID` (an event id names its room), resolved; none when the store cannot be read now.
    func items(_ eventID: String) -> [TimelineItem] {
        (try? node.items(eventID: eventID)) ?? []
    }
}
