import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdWSClient
import NIOCore
import NIOHTTP1
import ParleyAPI
import ParleyClient
import ParleyTesting
import Testing

@Suite struct LocalAPITests {
    // MARK: Who may ask

    @Test func `requests without the token or with a wrong one get 401 and send nothing`() async throws {
        let fixture = try await APIFixture()
        let before = try fixture.node.timeline("general", limit: 100).count
        for token in ["", String(repeating: "0", count: 64), fixture.token + "0", String(fixture.token.dropLast())] {
            let reply = try await fixture.post("/v1/rooms/general/messages", ["text": "should not be sent"], token: token)
            #expect(reply.status == 401)
            #expect(reply.errorCode == "not_allowed")
        }
        #expect(try await fixture.request(.GET, "/v1/rooms", token: "").status == 401)
        #expect(try fixture.node.timeline("general", limit: 100).count == before)
        #expect(fixture.api.counts.unauthorized == 5)
    }

    @Test func `a request from a page of another origin is refused even with the token, and so is its stream`() async throws {
        let fixture = try await APIFixture()
        let reply = try await fixture.request(
            .POST, "/v1/rooms/general/messages", body: Array(#"{"text":"csrf"}"#.utf8), headers: [("Origin", "http://evil.example")])
        #expect(reply.status == 403)
        #expect(reply.errorCode == "not_allowed")
        #expect(try fixture.node.timeline("general", limit: 100).compactMap(\.body).isEmpty)

        await #expect(throws: (any Error).self) {
            _ = try await fixture.stream(headers: [.origin: "http://evil.example"]) { _ in true }
        }
        #expect(fixture.api.counts.foreignOrigins == 2)
        #expect(fixture.api.counts.openStreams == 0)
        // Its own origin is fine.
        let own = try await fixture.request(.GET, "/v1/rooms", headers: [("Origin", "http://127.0.0.1:\(fixture.port)")])
        #expect(own.status == 200)
    }

    @Test func `a browser that brings the token in its URL gets it back as an HttpOnly SameSite=Strict cookie that works alone`() async throws {
        let fixture = try await APIFixture()
        let first = try await fixture.request(.GET, "/v1/me?token=\(fixture.token)", token: "")
        #expect(first.status == 200)
        let cookie = try #require(first.headers["Set-Cookie"].first)
        #expect(cookie == "parley_token_\(fixture.port)=\(fixture.token); Path=/; HttpOnly; SameSite=Strict")
        let later = try await fixture.request(.GET, "/v1/rooms", token: "", headers: [("Cookie", "parley_token_\(fixture.port)=\(fixture.token)")])
        #expect(later.status == 200)
        let wrong = try await fixture.request(.GET, "/v1/rooms", token: "", headers: [("Cookie", "parley_token_\(fixture.port)=\(LocalAPI.newToken())")])
        #expect(wrong.status == 401)
        // A token in the URL of anything but a page load is not taken.
        let posted = try await fixture.request(.POST, "/v1/rooms/general/messages?token=\(fixture.token)", body: Array(#"{"text":"x"}"#.utf8), token: "")
        #expect(posted.status == 401)
    }

    // MARK: Bad requests

    @Test func `bodies that are not JSON, too large, of the wrong shape, or naming what the node does not hold get an error code`() async throws {
        let fixture = try await APIFixture()
        let cases: [(String, [UInt8], Int, String)] = [
            ("/v1/rooms/general/messages", Array("not json".utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", Array("[1,2]".utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", Array(#"{"text": 5}"#.utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", Array(#"{"text": "x", "msgtype": "shout"}"#.utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", Array(String(repeating: "[", count: 100_000).utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", [UInt8](repeating: 0x20, count: (1 << 20) + 1), 413, "too_large"),
            ("/v1/rooms/nowhere/messages", Array(#"{"text": "x"}"#.utf8), 404, "unknown_room"),
            (
                "/v1/rooms/general/events/general::20260101T000000.000Z::00000000-0000-4000-8000-000000000000/edit", Array(#"{"text": "x"}"#.utf8), 404,
                "unknown_event"
            ),
            ("/v1/rooms/BAD%20ROOM/messages", Array(#"{"text": "x"}"#.utf8), 400, "invalid_argument"),
            ("/v1/rooms/general/messages", Array(#"{"text": "\#(String(repeating: "x", count: 70_000))"}"#.utf8), 413, "too_large"),
        ]
        for (path, body, status, code) in cases {
            let reply = try await fixture.request(.POST, path, body: body)
            #expect(reply.status == status, "\(path) \(body.prefix(20))")
            #expect(reply.errorCode == code, "\(path): \(String(decoding: reply.body.prefix(300), as: UTF8.self))")
            #expect(reply.json?["error"]?["message"]?.stringValue?.isEmpty == false)
        }
        #expect(try await fixture.request(.GET, "/v1/rooms/general/timeline?limit=0").status == 400)
        #expect(try await fixture.request(.GET, "/v1/nothing").status == 404)
        #expect(try fixture.node.timeline("general", limit: 100).compactMap(\.body).isEmpty)
    }

    // MARK: What a chat UI does

    @Test func `a message sent over HTTP shows in the timeline and the room list, and its edit, reaction and reply resolve`() async throws {
        let fixture = try await APIFixture()
        let sent = try await fixture.post("/v1/rooms/general/messages", ["text": "hello"])
        #expect(sent.status == 201)
        let eventID = try #require(sent.json?["event_id"]?.stringValue)
        #expect(try await fixture.post("/v1/rooms/general/events/\(eventID)/edit", ["text": "hello, world"]).status == 201)
        #expect(try await fixture.post("/v1/rooms/general/events/\(eventID)/reactions", ["key": "👍"]).status == 201)
        #expect(try await fixture.post("/v1/rooms/general/messages", ["text": "a reply", "reply_to": .string(eventID)]).status == 201)

        let timeline = try await fixture.request(.GET, "/v1/rooms/general/timeline?limit=2")
        let items = try #require(timeline.json?["items"])
        guard case .array(let page) = items else {
            Issue.record("no items")
            return
        }
        #expect(page.count == 2)
        #expect(page[0]["body"]?.stringValue == "hello, world")
        #expect(page[0]["edited"]?.boolValue == true)
        #expect(page[0]["reactions"]?["👍"] == .array(["alice"]))
        #expect(page[1]["parent_event_id"]?.stringValue == eventID)

        // The page before the first item holds what came before it.
        let older = try await fixture.request(.GET, "/v1/rooms/general/timeline?limit=50&before=\(eventID)")
        guard case .array(let olderItems)? = older.json?["items"] else {
            Issue.record("no items")
            return
        }
        #expect(!olderItems.isEmpty && olderItems.allSatisfy { $0["type"]?.stringValue != "m.room.message" })

        let rooms = try await fixture.request(.GET, "/v1/rooms")
        guard case .array(let list)? = rooms.json else {
            Issue.record("no rooms")
            return
        }
        #expect(list.count == 1)
        #expect(list[0]["name"]?.stringValue == "General")
        #expect(list[0]["last"]?["body"]?.stringValue == "a reply")
        #expect(list[0]["unread"]?.integerValue == 0)

        let search = try await fixture.request(.GET, "/v1/search?q=world")
        guard case .array(let hits)? = search.json else {
            Issue.record("no hits")
            return
        }
        #expect(hits.map { $0["event_id"]?.stringValue } == [eventID])
    }

    @Test func `the metrics endpoint answers in Prometheus text with the token, and not without it`() async throws {
        let fixture = try await APIFixture()
        let reply = try await fixture.request(.GET, "/v1/metrics")
        let text = String(decoding: reply.body, as: UTF8.self)
        #expect(reply.status == 200 && reply.headers["Content-Type"].first?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(text.contains("# TYPE parley_node_delivery_latency_seconds summary") && text.contains("parley_node_block_bytes_total{direction=\"down\"}"))
        #expect(try await fixture.request(.GET, "/v1/metrics", token: "").status == 401)
    }

    @Test func `the query endpoint filters and pages as parley query does, and refuses bad parameters`() async throws {
        let fixture = try await APIFixture()
        var sent: [String] = []
        for index in 0..<3 { sent.append(try fixture.node.send("general", text: "line \(index) of the minutes").event.eventID) }
        let first = try await fixture.request(.GET, "/v1/query?room=general&type=message&text=minutes&limit=2")
        #expect(first.status == 200)
        let cursor = try #require(first.json?["next_cursor"]?.stringValue)
        #expect(first.json?["events"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } == Array(sent.prefix(2)))
        let second = try await fixture.request(.GET, "/v1/query?room=general&type=message&text=minutes&limit=2&cursor=\(cursor)")
        #expect(second.json?["events"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } == [sent[2]])
        #expect(second.json?["next_cursor"] == JSONValue.null)
        // Percent-encoded words, all of which must appear.
        let spaced = try await fixture.request(.GET, "/v1/query?text=line%200")
        #expect(spaced.json?["events"]?.arrayValue?.compactMap { $0["event_id"]?.stringValue } == [sent[0]])
        for bad in ["/v1/query?colour=red", "/v1/query?since=yesterday", "/v1/query?limit=5000", "/v1/query?cursor=abc"] {
            let reply = try await fixture.request(.GET, bad)
            #expect(reply.status == 400 && reply.errorCode == "invalid_argument", "\(bad)")
        }
        #expect(try await fixture.request(.GET, "/v1/query?room=general", token: "").status == 401)
    }

    @Test func `a direct message is started with the other person's key, found again without it, and a room can be left`() async throws {
        let fixture = try await APIFixture()
        let bobKey = try Identity.create(userID: "bob", home: ParleyHome(path: fixture.directory.file("bob"))).signingKeyBase64
        let missingKey = try await fixture.post("/v1/dms", ["user_id": "bob"])
        #expect(missingKey.status == 400 && missingKey.errorCode == "invalid_argument")
        let started = try await fixture.post("/v1/dms", ["user_id": "bob", "signing_key": .string(bobKey)])
        #expect(started.status == 201)
        let roomID = try #require(started.json?["room_id"]?.stringValue)
        #expect(started.json?["existing"]?.boolValue == false)
        #expect(started.json?["invite_code"] == .null)
        let again = try await fixture.post("/v1/dms", ["user_id": "bob"])
        #expect(again.json?["room_id"]?.stringValue == roomID)
        #expect(again.json?["existing"]?.boolValue == true)
        let rooms = try await fixture.request(.GET, "/v1/rooms")
        #expect(rooms.json?.arrayValue?.contains { $0["room_id"]?.stringValue == roomID && $0["direct_peer"]?.stringValue == "bob" } == true)

        let left = try await fixture.post("/v1/rooms/general/leave", [:])
        #expect(left.status == 201)
        let state = try await fixture.request(.GET, "/v1/rooms/general")
        #expect(state.json?["summary"]?["membership"]?.stringValue == "leave")
        #expect(try await fixture.post("/v1/rooms/nowhere/leave", [:]).status == 404)
    }

    @Test func `another client's stream shows a send as a new item, an edit as a changed item, and typing`() async throws {
        let fixture = try await APIFixture()
        let messages = try await fixture.stream(
            opened: {
                let sent = try await fixture.post("/v1/rooms/general/messages", ["text": "first"])
                let id = try #require(sent.json?["event_id"]?.stringValue)
                _ = try await fixture.post("/v1/rooms/general/events/\(id)/edit", ["text": "first, edited"])
                _ = try await fixture.post("/v1/rooms/general/typing", ["typing": true])
            },
            until: { $0.contains { $0["type"]?.stringValue == "typing" } })
        let kinds = messages.compactMap { $0["type"]?.stringValue }
        #expect(kinds == ["ready", "item:new", "item:changed", "typing"])
        #expect(messages[1]["item"]?["body"]?.stringValue == "first")
        #expect(messages[2]["item"]?["body"]?.stringValue == "first, edited")
        #expect(messages[2]["item"]?["event_id"] == messages[1]["item"]?["event_id"])
        #expect(messages[3]["user_id"]?.stringValue == "alice")
    }

    @Test func `the timeline marks this device's messages no transport has taken yet as pending, and only those`() async throws {
        let fixture = try await APIFixture()
        let client = BucketClient(node: fixture.node)
        _ = try await client.createRoom("shared", bucket: .folder(path: fixture.directory.file("bucket")), createBucket: true)
        let first = try #require(try await fixture.post("/v1/rooms/shared/messages", ["text": "one"]).json?["event_id"])
        _ = try await client.flush("shared")
        let second = try #require(try await fixture.post("/v1/rooms/shared/messages", ["text": "two"]).json?["event_id"])
        let items = try #require(try await fixture.request(.GET, "/v1/rooms/shared/timeline").json?["items"]?.arrayValue)
        let pending = items.filter { $0["pending"] == .bool(true) }.map { $0["event_id"] }
        #expect(pending == [second])
        #expect(items.contains { $0["event_id"] == first })
        // A room no transport carries has nowhere to send: nothing in it is pending.
        _ = try await fixture.post("/v1/rooms/general/messages", ["text": "local"])
        let local = try #require(try await fixture.request(.GET, "/v1/rooms/general/timeline").json?["items"]?.arrayValue)
        #expect(!local.contains { $0["pending"] != nil })
    }

    @Test func `a reaction taken back changes its message on the stream, in a plain and in an encrypted room, and leaves no item behind`() async throws {
        let fixture = try await APIFixture()
        _ = try fixture.node.createRoom("vault", encryption: .epochs(history: .shared))
        let ids = Received()
        let messages = try await fixture.stream(
            opened: {
                for room in ["general", "vault"] {
                    let sent = try await fixture.post("/v1/rooms/\(room)/messages", ["text": "react to me"])
                    let id = try #require(sent.json?["event_id"]?.stringValue)
                    let reaction = try await fixture.post("/v1/rooms/\(room)/events/\(id)/reactions", ["key": "👍"])
                    ids.messages.withLock { $0 += [.string(id), reaction.json?["event_id"] ?? .null] }
                    let removed = try await fixture.post("/v1/rooms/\(room)/events/\(id)/reactions/remove", ["key": "👍"])
                    #expect(removed.status == 200)
                    #expect(removed.json?["redactions"]?.arrayValue?.count == 1)
                    let none = try await fixture.post("/v1/rooms/\(room)/events/\(id)/reactions/remove", ["key": "👍"])
                    #expect(none.status == 400 && none.errorCode == "invalid_argument")
                }
            },
            until: { all in all.filter { $0["type"]?.stringValue == "item:changed" && $0["room_id"]?.stringValue == "vault" }.count >= 2 })
        let ids4 = ids.messages.withLock { $0 }
        try #require(ids4.count == 4)
        for (room, message, reaction) in [("general", ids4[0], ids4[1]), ("vault", ids4[2], ids4[3])] {
            let changes = messages.filter { $0["type"]?.stringValue == "item:changed" && $0["room_id"]?.stringValue == room }
            #expect(changes.count == 2, "\(room): the reaction, then its redaction, change the message")
            #expect(changes.allSatisfy { $0["item"]?["event_id"] == message }, "\(room): only the message changes")
            #expect(changes.first?["item"]?["reaction_events"]?.arrayValue?.first?["event_id"] == reaction)
            #expect(changes.last?["item"]?["reactions"] == .object(JSONObject()))
            #expect(changes.last?["item"]?["reaction_events"] == nil)
            // The redacted reaction is no item of the timeline: no "message deleted" where it was.
            let items = try #require(try await fixture.request(.GET, "/v1/rooms/\(room)/timeline").json?["items"]?.arrayValue)
            #expect(!items.contains { $0["event_id"] == reaction }, "\(room)")
        }
    }

    @Test func `events stored by another process on the same home reach the stream once the feed catches up`() async throws {
        let fixture = try await APIFixture()
        let other = try Node(home: fixture.node.home)
        let messages = try await fixture.stream(
            opened: {
                _ = try other.send("general", text: "from another process")
                // A running node checks for this every 100 ms (NodeRunner); here the test does it.
                try fixture.node.feed.catchUp()
            },
            until: { $0.count == 2 })
        #expect(messages[1]["type"]?.stringValue == "item:new")
        #expect(messages[1]["item"]?["body"]?.stringValue == "from another process")
    }

    // MARK: Load and slow clients

    @Test func `a burst of 1,000 requests is served, and the node answers at once afterwards`() async throws {
        let fixture = try await APIFixture()
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<1_000 {
                // Queued in the client's pool, the last of them wait for all the others: on a busy machine that takes
                // longer than one request's usual deadline, and all that is asked here is that each one is served.
                group.addTask {
                    index % 10 == 0
                        ? try await fixture.post("/v1/rooms/general/messages", ["text": .string("burst \(index)")], timeout: 300).status
                        : try await fixture.request(.GET, "/v1/rooms/general/timeline?limit=20", timeout: 300).status
                }
            }
            return try await group.reduce(into: [Int: Int]()) { $0[$1, default: 0] += 1 }
        }
        #expect(statuses == [200: 900, 201: 100])
        #expect(try fixture.node.timeline("general", limit: 1_000).compactMap(\.body).count == 100)
        let started = ContinuousClock.now
        #expect(try await fixture.request(.GET, "/v1/me").status == 200)
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test func `a stream whose client never reads is cut off after its backlog, and the node and other clients go on`() async throws {
        var settings = LocalAPI.Settings()
        settings.streamBacklog = 20
        let fixture = try await APIFixture(settings: settings)
        let socket = try StalledWebSocket(port: fixture.port, token: fixture.token)
        #expect(await waitUntil { fixture.api.counts.openStreams == 1 })
        // Enough to fill the socket's buffers many times over, then the backlog.
        let text = String(repeating: "x", count: 8_000)
        var sent = 0
        while fixture.api.counts.streamsCutOff == 0 && sent < 5_000 {
            _ = try fixture.node.publish(roomID: "general", (0..<20).map { _ in OutgoingEvent.message(text) })
            sent += 20
        }
        // The stream is cut off by its backlog: the count of cut-off streams lags behind the publishing loop (it is
        // counted once the stream's tasks unwind), so the loop may well have published all it could.
        #expect(await waitUntil { fixture.api.counts.streamsCutOff == 1 && fixture.api.counts.openStreams == 0 })
        withExtendedLifetime(socket) {}
        // Another client is served as before.
        let messages = try await fixture.stream(
            opened: { _ = try await fixture.post("/v1/rooms/general/messages", ["text": "still here"]) },
            until: { $0.count == 2 })
        #expect(messages[1]["item"]?["body"]?.stringValue == "still here")
    }

    @Test func `sends waiting for the home's lock, held by another process, do not stall the node's other requests`() async throws {
        let fixture = try await APIFixture()
        // What another `parley` process publishing in this home holds.
        let lock = open(fixture.node.home.path + "/node.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        try #require(lock >= 0 && flock(lock, LOCK_EX) == 0)
        let sends = Task {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<4 { group.addTask { try await fixture.post("/v1/rooms/general/messages", ["text": .string("waiting \(index)")]).status } }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
        }
        // More sends wait than the machine has cores (4; the HTTP client keeps 8 connections per host); the node still
        // answers what needs no lock.
        #expect(try await fixture.request(.GET, "/v1/me").status == 200)
        #expect(try await fixture.request(.GET, "/v1/rooms/general/timeline").status == 200)
        flock(lock, LOCK_UN)
        close(lock)
        #expect(try await sends.value == Array(repeating: 201, count: 4))
        #expect(try fixture.node.timeline("general", limit: 100).compactMap(\.body).count == 4)
    }

    // MARK: node.json

    @Test func `node.json says where the API is, is readable by its owner only, and goes when the API stops`() async throws {
        let directory = TemporaryDirectory()
        let home = ParleyHome(path: directory.file("alice"))
        _ = try Identity.create(userID: "alice", home: home)
        let node = try Node(home: home)
        let api = LocalAPI(client: BucketClient(node: node), logger: .init(label: "test"))
        let server = Task { try await api.run() }
        let port = try #require(await api.port())
        let attributes = try FileManager.default.attributesOfItem(atPath: home.nodeInfoPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let info = try JSONParser().parse(Array(try Data(contentsOf: URL(fileURLWithPath: home.nodeInfoPath))).dropLast())
        #expect(info["port"]?.integerValue == Int64(port))
        #expect(info["url"]?.stringValue == "http://127.0.0.1:\(port)")
        #expect(info["pid"]?.integerValue == Int64(getpid()))
        let token = try #require(info["token"]?.stringValue)
        #expect(token.count == 64 && token != LocalAPI.newToken())
        server.cancel()
        _ = await server.result
        #expect(!FileManager.default.fileExists(atPath: home.nodeInfoPath))
    }
}

struct CannotConnect: Error {}

/// A WebSocket client that upgrades and then never reads: its receive buffer is made small, so the server's writes
/// back up at once.
final class StalledWebSocket: Sendable {
    let descriptor: Int32

    init(port: Int, token: String) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var size: Int32 = 4_096
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw CannotConnect() }
        let upgrade = """
            GET /v1/stream HTTP/1.1\r
            Host: 127.0.0.1:\(port)\r
            Upgrade: websocket\r
            Connection: Upgrade\r
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
            Sec-WebSocket-Version: 13\r
            Authorization: Bearer \(token)\r
            \r

            """
        _ = Array(upgrade.utf8).withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
    }

    deinit { close(descriptor) }
}
