import Foundation
import ParleyCore
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient
@testable import ParleyStore

/// The query API (`parley query`, `GET /v1/query`): filters, each room's order, and cursors that neither repeat nor
/// skip.
@Suite struct QueryTests {
    func parameters(_ pairs: KeyValuePairs<String, String>) throws -> EventQuery {
        try EventQuery(parameters: pairs.map { ($0.key, $0.value) })
    }

    func ids(_ hits: [QueryHit]) -> [String] { hits.map(\.event.eventID) }

    @Test func `filters by sender, type, time, file and text, and pages through a room in its order without repeats or gaps`() async throws {
        let world = try BucketWorld(.folder)
        let (aliceClock, bobClock) = (TestClock(), TestClock())
        let (alice, bob) = try await BucketRoomTests().twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        aliceClock.advance(60_000)
        var sent: [Event] = []
        for index in 0..<25 {
            aliceClock.advance(1_000)
            sent.append(try alice.node.send("team", text: index == 7 ? "the budget for march" : "note \(index)").event)
        }
        let file = world.directory.file("plan.txt")
        try Data("quarterly plan".utf8).write(to: URL(fileURLWithPath: file))
        aliceClock.advance(1_000)
        let shared = try alice.node.shareFile("team", path: file, caption: "the plan").event
        _ = try alice.node.react("team", eventID: sent[3].eventID, key: "👍")
        _ = try await alice.flush("team")
        bobClock.ms = aliceClock.ms + 1_000
        _ = try await bob.sync("team")
        let bobSaid = try bob.node.send("team", text: "budget approved").event
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        let node = alice.node

        #expect(ids(try node.query(parameters(["room": "team", "sender": "bob", "type": "message"])).hits) == [bobSaid.eventID])
        let messages = try node.query(parameters(["room": "team", "type": "m.room.message", "limit": "1000"])).hits
        #expect(messages.count == 27 && messages.allSatisfy { $0.type == EventType.message })
        #expect(ids(try node.query(parameters(["room": "team", "type": "reaction"])).hits).count == 1)
        let files = try node.query(parameters(["room": "team", "has_file": "true"])).hits
        #expect(ids(files) == [shared.eventID])
        // Shown as its summary: the file's key and blocks stay in the node.
        let fileHit = try #require(files.first)
        let shown = try #require(JSONOutput.queryHit(fileHit)["content"]?["file"]?.objectValue)
        #expect(shown["name"]?.stringValue == "plan.txt" && Set(shown.keys) == ["name", "media_type", "size", "sha256"])
        #expect(Set(ids(try node.query(parameters(["text": "budget"])).hits)) == [sent[7].eventID, bobSaid.eventID])
        // A common word is looked for by reading in order; a rare one by gathering its matches: the same answer.
        for text in ["note", "budget", "absent"] {
            var gathering = try parameters(["room": "team", "text": text, "limit": "7"])
            gathering.readsInOrder = false
            var reading = gathering
            reading.readsInOrder = true
            reading.commonWordMatches = 1
            #expect(ids(try node.query(gathering).hits) == ids(try node.query(reading).hits), "\(text)")
            #expect(try node.query(gathering).next == (try node.query(reading).next))
        }
        let window = try node.query(parameters(["room": "team", "since": String(sent[5].timestampMs), "until": String(sent[9].timestampMs)])).hits
        #expect(ids(window) == sent[5...9].map(\.eventID))

        // Pages of 4 give every event of the room once, in the room's order, whatever arrives meanwhile.
        var seen: [QueryHit] = []
        var cursor: String?
        var pages = 0
        repeat {
            var pairs: [(name: String, value: String)] = [("room", "team"), ("limit", "4")]
            if let cursor { pairs.append(("cursor", cursor)) }
            let page = try node.query(EventQuery(parameters: pairs))
            seen += page.hits
            cursor = page.next?.text
            pages += 1
            if pages == 2 { _ = try node.send("team", text: "arrives while paging") }
        } while cursor != nil && pages < 100
        let orders = seen.map { EventOrder($0.event) }
        #expect(orders == orders.sorted() && Set(ids(seen)).count == seen.count)
        let all = try node.query(parameters(["room": "team", "limit": "1000"])).hits
        #expect(ids(seen) == ids(all))

        // Across rooms: room by room, each in its order, the cursor moving from one room to the next.
        _ = try node.createRoom("annex", name: "Annex")
        for index in 0..<3 { _ = try node.send("annex", text: "annex \(index)") }
        var acrossRooms: [QueryHit] = []
        var next: QueryCursor?
        repeat {
            var query = try parameters(["type": "message", "limit": "5"])
            query.after = next
            let page = try node.query(query)
            acrossRooms += page.hits
            next = page.next
        } while next != nil
        let everything = try node.query(parameters(["type": "message", "limit": "1000"])).hits
        #expect(ids(acrossRooms) == ids(everything) && Set(everything.map(\.event.roomID)) == ["annex", "team"])
        #expect(everything.map(\.event.roomID) == everything.map(\.event.roomID).sorted())
    }

    @Test func `sealed events match by the type and text inside once opened`() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await BucketRoomTests().twoMembers(world)
        _ = try alice.node.enableEncryption("team", .epochs(history: .shared))
        let secret = try alice.node.send("team", text: "the launch code is blue").event
        _ = try await alice.flush("team")
        _ = try await bob.sync("team")
        #expect(secret.type == EventType.encrypted)
        let found = try bob.node.query(parameters(["room": "team", "type": "message", "text": "launch"])).hits
        #expect(ids(found) == [secret.eventID] && found.first?.content?["body"]?.stringValue == "the launch code is blue")
        let json = JSONOutput.queryHit(try #require(found.first))
        #expect(json["type"]?.stringValue == EventType.message && json["sealed"] == nil)
    }

    @Test func `bad parameters are refused with what to give instead`() throws {
        let bad: [[(name: String, value: String)]] = [
            [("colour", "red")], [("room", "a"), ("room", "b")], [("room", "no room!")], [("sender", "")], [("type", "Not A Type")],
            [("since", "yesterday")], [("until", "2026-02-30")], [("since", "2026-12-05T25:00Z")], [("limit", "0")], [("limit", "1001")],
            [("has_file", "yes")], [("text", "   ")], [("cursor", "garbage")], [("since", "2026-12-06"), ("until", "2026-12-05")],
        ]
        for parameters in bad {
            #expect(throws: StoreError.self, "\(parameters)") { try EventQuery(parameters: parameters) }
        }
        #expect(try parameters(["since": "2026-12-05"]).sinceMs == 1_796_428_800_000)
        #expect(try parameters(["since": "2026-12-05T10:30Z"]).sinceMs == (try parameters(["since": "2026-12-05"]).sinceMs ?? 0) + 37_800_000)
        #expect(try parameters(["since": "2026-12-05T10:30:15.250Z"]).sinceMs == (try parameters(["since": "2026-12-05T10:30Z"]).sinceMs ?? 0) + 15_250)
        #expect(try parameters(["since": "1796428800000"]).sinceMs == 1_796_428_800_000)
        #expect(try parameters(["type": "edit"]).type == EventType.edit)
        let cursor = QueryCursor(roomID: "team", order: EventOrder(timestampMs: 5, seq: 2, eventID: "team::x", senderKey: "k+/="))
        #expect(QueryCursor(text: cursor.text) == cursor && !cursor.text.contains("+") && !cursor.text.contains("/"))
    }
}

@Suite(.serialized) struct QueryCLITests {
    @Test func `parley query prints matches, pages with --cursor, and reads JSON the same`() throws {
        let nodes = try TwoNodes()
        try nodes.shareBucketRoom("team")
        for index in 0..<3 { try #require(try nodes.alice.run(["send", "team", "alice \(index) \u{1B}[2J"]).status == 0) }
        try #require(try nodes.alice.run(["sync"]).status == 0)
        try #require(try nodes.bob.run(["sync"]).status == 0)
        try #require(try nodes.bob.run(["send", "team", "bob here"]).status == 0)

        let text = try nodes.bob.run(["query", "--room", "team", "--type", "message", "--limit", "2", "--utc"])
        #expect(text.status == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines[0].contains("alice  m.room.message  alice 0 \\x1b[2J") && lines[2].hasPrefix("more: parley query … --cursor "))
        let cursor = String(lines[2].split(separator: " ").last!)
        let rest = try nodes.bob.run(["query", "--room", "team", "--type", "message", "--cursor", cursor, "--json"])
        let page = try JSONParser().parse(Array(rest.stdout.utf8))
        #expect(page["events"]?.arrayValue?.compactMap { $0["content"]?["body"]?.stringValue } == ["alice 2 \u{1B}[2J", "bob here"])
        #expect(page["next_cursor"] == JSONValue.null)

        let wrong = try nodes.bob.run(["query", "--since", "last week"])
        #expect(wrong.status == 1 && wrong.stderr.contains("since: last week is not a time") && wrong.stderr.contains("2026-12-05T10:30Z"))
        let unknown = try nodes.bob.run(["query", "--room", "elsewhere"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no room elsewhere"))
    }
}
