import Foundation
import Logging
import ParleyClient
import ParleyTesting
import Synchronization
import Testing

@testable import ParleyAPI

/// Two nodes' APIs and the demo server framing them, all listening.
final class DemoFixture: Sendable {
    let alice: APIFixture
    let bob: APIFixture
    let server: DemoServer
    let switches = Switches()
    let port: Int
    private let running: Task<Void, any Error>

    init() async throws {
        alice = try await APIFixture(user: "alice")
        bob = try await APIFixture(user: "bob")
        let switches = switches
        let participants = [("alice", "Alice", alice.api), ("bob", "Bob", bob.api)].map { name, label, api in
            DemoServer.Participant(
                name: name, label: label, api: api, isOnline: { switches.online.withLock { $0[name]! } },
                setOnline: { value in switches.online.withLock { $0[name] = value } })
        }
        let server = DemoServer(participants: participants, bucket: "file:///demo/bucket", roomID: "general", logger: Logger(label: "test.demo"))
        self.server = server
        running = Task { try await server.run() }
        let url = try #require(await server.pageURL())
        port = try #require(URLComponents(string: url)?.port)
        #expect(url == "http://127.0.0.1:\(port)/?token=\(server.token)")
    }

    deinit { running.cancel() }

    var base: String { "http://127.0.0.1:\(port)" }
}

final class Switches: Sendable {
    let online = Mutex<[String: Bool]>(["alice": true, "bob": true])
}

/// The page of `parley web --demo`, around two nodes' APIs.
@Suite struct DemoServerTests {
    @Test func `the page lists both nodes with their page addresses and may frame only them, and only it may frame their pages`() async throws {
        let fixture = try await DemoFixture()
        let page = try await apiRequest(.GET, fixture.base + "/?token=\(fixture.server.token)", token: "")
        #expect(page.status == 200)
        let policy = try #require(page.headers["Content-Security-Policy"].first)
        #expect(policy.contains("frame-src http://127.0.0.1:\(fixture.alice.port) http://127.0.0.1:\(fixture.bob.port);"))
        #expect(policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'") && !policy.contains("unsafe"))
        #expect(page.headers["Set-Cookie"].first?.hasPrefix("parley_token_\(fixture.port)=") == true)
        let info = try await apiRequest(.GET, fixture.base + "/v1/demo", token: fixture.server.token)
        let participants = try #require(info.json?["participants"]?.arrayValue)
        #expect(participants.map { $0["name"]?.stringValue } == ["alice", "bob"])
        #expect(participants[0]["page"]?.stringValue == "http://127.0.0.1:\(fixture.alice.port)/?token=\(fixture.alice.token)")
        #expect(info.json?["bucket"]?.stringValue == "file:///demo/bucket")
        // Each node's page may now be framed by the demo page, and by no other.
        let nodePage = try await fixture.alice.request(.GET, "/")
        let nodePolicy = try #require(nodePage.headers["Content-Security-Policy"].first)
        #expect(nodePolicy.hasSuffix("frame-ancestors http://127.0.0.1:\(fixture.port)"))
    }

    @Test func `without the demo's token the page says how to get in and the API refuses`() async throws {
        let fixture = try await DemoFixture()
        for path in ["/", "/demo.js", "/?token=\(LocalAPI.newToken())"] {
            let reply = try await apiRequest(.GET, fixture.base + path, token: "")
            #expect(reply.status == 401)
            #expect(String(decoding: reply.body, as: UTF8.self).contains("parley web --demo"))
        }
        // A node's token is not the demo's.
        let info = try await apiRequest(.GET, fixture.base + "/v1/demo", token: fixture.alice.token)
        #expect(info.status == 401)
        let foreign = try await apiRequest(.GET, fixture.base + "/v1/demo", token: fixture.server.token, headers: [("Origin", "http://evil.example")])
        #expect(foreign.status == 403)
    }

    @Test func `the switch takes a node offline and back, and an unknown node or a bad body is refused`() async throws {
        let fixture = try await DemoFixture()
        let off = try await apiRequest(
            .POST, fixture.base + "/v1/demo/participants/bob/online", body: Array(#"{"online":false}"#.utf8), token: fixture.server.token)
        #expect(off.status == 200)
        #expect(fixture.switches.online.withLock { $0 } == ["alice": true, "bob": false])
        let info = try await apiRequest(.GET, fixture.base + "/v1/demo", token: fixture.server.token)
        #expect(info.json?["participants"]?.arrayValue?[1]["online"] == .bool(false))
        let unknown = try await apiRequest(
            .POST, fixture.base + "/v1/demo/participants/carol/online", body: Array(#"{"online":true}"#.utf8), token: fixture.server.token)
        #expect(unknown.status == 400)
        let bad = try await apiRequest(
            .POST, fixture.base + "/v1/demo/participants/bob/online", body: Array(#"{"online":"yes"}"#.utf8), token: fixture.server.token)
        #expect(bad.status == 400)
        let huge = try await apiRequest(
            .POST, fixture.base + "/v1/demo/participants/bob/online", body: Array(repeating: 0x20, count: 1 << 16), token: fixture.server.token)
        #expect(huge.status == 413)
    }

    @Test func `the traffic log follows an event from its sender's store to the other's, counts requests, and stays bounded`() {
        var log = TrafficLog()
        _ = log.stored(eventID: "e1", type: "m.room.message", roomID: "r", from: "alice", by: "alice", of: 2)
        _ = log.sent(eventID: "e1", by: "alice", transport: "bucket")
        _ = log.record(participant: "alice", request: "put", key: "rooms/r/logs/x.jsonl", size: 600, seconds: 0.002, failure: nil)
        _ = log.record(participant: "bob", request: "get", key: "rooms/r/logs/x.jsonl", size: 600, seconds: 0.001, failure: nil)
        _ = log.record(participant: "bob", request: "list", key: "rooms/r/", size: 0, seconds: 0.001, failure: "offline")
        #expect(log.stats.delivered == 0)
        let arrived = log.stored(eventID: "e1", type: "m.room.message", roomID: "r", from: "alice", by: "bob", of: 2)
        #expect(log.stored(eventID: "e1", type: "m.room.message", roomID: "r", from: "alice", by: "bob", of: 2).isEmpty, "a second store says nothing new")
        #expect(log.stats.events == 1 && log.stats.delivered == 1 && log.stats.latencies.count == 1)
        #expect(log.stats.bytesWritten == 600 && log.stats.bytesRead == 600 && log.stats.failures == 1 && log.stats.requests["list"] == 1)
        let entry = try! #require(arrived.first)
        #expect(entry["from"] == "alice" && entry["stored_us"]?["alice"] == .integer(0) && entry["stored_us"]?["bob"] != nil)
        #expect(entry["sent_us"]?["bucket"] != nil)
        #expect(log.arrived(eventID: "e1", by: "bob", transport: "relay")?["via"]?["bob"] == "relay")
        #expect(log.arrived(eventID: "e1", by: "bob", transport: "bucket") == nil, "the first transport to bring it is kept")
        #expect(log.arrived(eventID: "unknown", by: "bob", transport: "relay") == nil)
        // An event first seen at the other's store (stored before the demo watched) still names its sender.
        let late = log.stored(eventID: "e2", type: "m.room.message", roomID: "r", from: "alice", by: "bob", of: 2)
        #expect(late.first?["from"] == "alice")
        for index in 0..<(TrafficLog.eventsFollowed + 10) {
            _ = log.stored(eventID: "flood\(index)", type: "m.room.message", roomID: "r", from: "bob", by: "bob", of: 2)
        }
        #expect(log.followed.count == TrafficLog.eventsFollowed && log.followOrder.count == TrafficLog.eventsFollowed)
        #expect(log.entries.count <= 2 * TrafficLog.kept)
        #expect(log.followed["e1"] == nil, "the oldest are forgotten")
    }
}
