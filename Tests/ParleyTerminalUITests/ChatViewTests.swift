import Foundation
import ParleyClient
import ParleyTerminalUI
import Testing

@Suite struct ChatViewTests {
    static let utc = TimeZone(identifier: "UTC")!

    static func item(_ id: String, _ sender: String, _ body: String?, at ms: Int64, extra: [String: JSONValue] = [:]) -> ChatItem {
        var object = JSONObject()
        object["event_id"] = .string(id)
        object["sender_id"] = .string(sender)
        object["timestamp_ms"] = .integer(ms)
        object["type"] = .string("m.room.message")
        object["msgtype"] = .string("text")
        if let body { object["body"] = .string(body) }
        for (key, value) in extra { object[key] = value }
        return ChatItem(json: .object(object))
    }

    static func model() -> ChatModel {
        var model = ChatModel()
        model.me = "alice"
        model.rooms = [
            ChatRoom(json: ["room_id": "general", "name": "General", "members": .integer(2)]),
            ChatRoom(json: ["room_id": "ops", "unread": .integer(3), "encrypted": .bool(true)]),
        ]
        model.select(room: "general")
        let day: Int64 = 1_764_806_400_000  // 2025-12-04 00:00 UTC
        var state = item("s1", "alice", nil, at: day - 3_600_000)
        state.type = "m.room.member"
        state.summary = "bob joined"
        model.items["general"] = [
            state,
            item("m1", "bob", "Morning! Is the build green?", at: day + 9 * 3_600_000),
            item(
                "m2", "alice", "It is", at: day + 9 * 3_600_000 + 60_000,
                extra: ["parent_event_id": "m1", "edited": .bool(true), "reactions": .object(JSONObject(["🎉": .array(["bob"])]))]),
            item("m3", "bob", nil, at: day + 9 * 3_600_000 + 120_000, extra: ["redacted": .bool(true)]),
        ]
        model.reachedStart.insert("general")
        model.sent.insert("m2")
        return model
    }

    @Test func `this device's messages show when another device received and read them`() {
        var model = Self.model()
        let day: Int64 = 1_764_806_400_000
        model.items["general"]! += [
            Self.item("m4", "alice", "first", at: day + 10 * 3_600_000, extra: ["delivery": ["state": "delivered", "delivered": 1, "read": 0, "devices": 1]]),
            Self.item("m5", "alice", "second", at: day + 10 * 3_600_000 + 60_000),
            Self.item("m6", "alice", "third", at: day + 10 * 3_600_000 + 120_000),
        ]
        model.sent.formUnion(["m5", "m6"])
        model.receipts["m5"] = "read"
        let text = ChatView.frame(model, width: 80, height: 24, timeZone: Self.utc).text
        #expect(text.contains("10:00 alice: first ✓✓") && !text.contains("first ✓✓ read"))
        #expect(text.contains("10:01 alice: second ✓✓ read"))
        #expect(text.contains("10:02 alice: third ✓"))
        #expect(!text.contains("third ✓✓"))
    }

    @Test func `the timeline shows days, senders, edits, reactions, replies, redactions and state changes`() {
        let frame = ChatView.frame(Self.model(), width: 80, height: 24, timeZone: Self.utc)
        let text = frame.text
        #expect(frame.lines.count == 24)
        #expect(text.contains("Wed 3 Dec 2025"))
        #expect(text.contains("Thu 4 Dec 2025"))
        #expect(text.contains("23:00 * bob joined"))
        #expect(text.contains("09:00 bob: Morning! Is the build green?"))
        #expect(text.contains("↳ bob: Morning! Is the build green?"))
        #expect(text.contains("09:01 alice: It is (edited) ✓"))
        #expect(text.contains("[🎉 1]"))
        #expect(text.contains("09:02 bob: message deleted"))
        #expect(text.contains(" ops 🔒 3"))
        #expect(frame.lines.allSatisfy { $0.columns <= 80 })
        #expect(frame.cursor.row == 23)
    }

    @Test func `text from outside reaches the frame without a control character or bidi override`() {
        var model = Self.model()
        model.items["general"]!.append(Self.item("m4", "mallory\u{1b}[31m", "\u{1b}]0;pwned\u{7}\u{202e}txt.exe\r\nnext", at: 1_764_900_000_000))
        model.rooms.append(ChatRoom(json: ["room_id": "x", "name": "\u{1b}[2Jroom"]))
        let text = ChatView.frame(model, width: 80, height: 24, timeZone: Self.utc).text
        #expect(!text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || (0x7F...0x9F).contains($0.value) || $0 == "\u{202e}" })
        #expect(text.contains("mallory␛[31m"))
    }

    @Test func `a terminal of 20 by 5 still shows the status and the input line, and smaller ones draw nothing wrong`() {
        var model = Self.model()
        model.connected = true
        model.input.insert("typed")
        let frame = ChatView.frame(model, width: 20, height: 5, timeZone: Self.utc)
        #expect(frame.lines.count == 5)
        #expect(frame.lines[3].text.contains("connected"))
        #expect(frame.lines[4].text.hasPrefix("> typed"))
        #expect(frame.lines.allSatisfy { $0.columns <= 20 })
        #expect(ChatView.frame(model, width: 3, height: 2).lines.count == 2)
    }

    @Test func `scrolling back shows older lines and says how to return`() {
        var model = Self.model()
        model.scroll = 3
        let text = ChatView.frame(model, width: 80, height: 10, timeZone: Self.utc).text
        #expect(!text.contains("message deleted"))
        #expect(text.contains("scrolled back"))
    }
}
