import AsyncHTTPClient
import Crypto
import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import ParleyCore
import ParleySync
import ParleyTesting
import Synchronization
import Testing

@testable import ParleyRelay
@testable import ParleyRelayClient

@Suite struct RelayServerTests {
    static let t0: Int64 = 1_760_000_000_000

    @Test func `three clients chat through one relay, live and by catch-up`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            var carol = TestDevice("carol")
            let (aliceToken, bobToken, carolToken) = (
                try await relay.account(for: alice), try await relay.account(for: bob), try await relay.account(for: carol)
            )
            let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1), alice.invite("team", carol, at: Self.t0 + 2)]
            let results = try await relay.connect(alice, token: aliceToken) { try await $0.publish(founding) }
            #expect(results.map(\.verdict) == [.stored, .stored, .stored, .stored])

            let bobJoin = bob.join("team", at: Self.t0 + 10)
            let hello = bob.message("team", "hello from bob", at: Self.t0 + 11)
            let carolJoin = carol.join("team", at: Self.t0 + 12)
            let (aliceKey, bobKey, carolKey) = (alice.publicKey, bob.publicKey, carol.publicKey)
            let (bobDevice, carolDevice) = (bob, carol)
            let seen = try await relay.connect(carolDevice, token: carolToken) { channel in
                // Carol is invited: she reads the room, joins, and then gets Bob's message live.
                let caughtUp = try await channel.subscribe("team")
                #expect(caughtUp.events.map(\.hash) == founding.map(\.hash))
                #expect(caughtUp.heads == [aliceKey: 4])
                #expect(try await channel.publish([carolJoin]).map(\.verdict) == [.stored])
                try await relay.connect(bobDevice, token: bobToken) { bobChannel in
                    let bobView = try await bobChannel.subscribe("team")
                    #expect(bobView.events.count == 5)
                    #expect(try await bobChannel.publish([bobJoin, hello]).map(\.verdict) == [.stored, .stored])
                }
                let live = try await channel.read {
                    if case .events(_, let events) = $0 { events.contains { $0["event_id"]?.stringValue == hello.event.eventID } } else { false }
                }
                return live.compactMap { frame -> [String]? in
                    if case .events(_, let events) = frame { events.compactMap { $0["event_id"]?.stringValue } } else { nil }
                }.flatMap { $0 }
            }
            #expect(seen == [bobJoin.event.eventID, hello.event.eventID])

            // Catch-up is exact: a client holding Alice's chain up to 4 and Bob's up to 1 gets Carol's join and Bob's message.
            let late = try await relay.connect(alice, token: aliceToken) { try await $0.subscribe("team", heads: [aliceKey: 4, bobKey: 1]) }
            #expect(late.events.map(\.hash) == [hello.hash, carolJoin.hash])
            #expect(late.heads == [aliceKey: 4, bobKey: 2, carolKey: 1])
        }
    }

    @Test func `a device that does not read a room gets only what it needs to join, and nothing of a room the relay does not hold`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var mallory = TestDevice("mallory")
            let aliceToken = try await relay.account(for: alice)
            let malloryToken = try await relay.account(for: mallory)
            let founding = alice.create("team", at: Self.t0)
            let secret = alice.message("team", "members only", at: Self.t0 + 1)
            _ = try await relay.connect(alice, token: aliceToken) { try await $0.publish(founding + [secret]) }
            let attempt = [mallory.join("team", at: Self.t0 + 5), mallory.message("team", "let me in", at: Self.t0 + 6)]
            try await relay.connect(mallory, token: malloryToken) { channel in
                let known = try await channel.subscribe("team")
                #expect(known.heads.isEmpty)
                #expect(known.events.map(\.hash) == founding.map(\.hash))
                let unknown = try await channel.subscribe("elsewhere")
                #expect(unknown.heads.isEmpty && unknown.events.isEmpty)
                // Not invited: her join is refused, and her message with it (nothing waits on the relay for a
                // predecessor); neither is stored.
                let results = try await channel.publish(attempt)
                #expect(results.map(\.verdict) == [.rejected, .rejected])
                #expect(results.map(\.code) == ["unauthorized", "gap"])
                try await channel.send(.history(id: 9, roomID: "team", before: nil, limit: 10))
                let refused = try await channel.read { if case .error(_, _, 9) = $0 { true } else { false } }
                #expect(refused.last.map { if case .error("not_a_member", _, _) = $0 { true } else { false } } == true)
            }
            #expect(try relay.server.events.store.chainHeads(roomID: "team") == [alice.publicKey: 3])
        }
    }

    @Test func `forged, tampered, foreign and replayed events each get their verdict and the relay goes on`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            let aliceToken = try await relay.account(for: alice)
            _ = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0)
            let message = alice.message("team", "original", at: Self.t0 + 1)
            var tampered = try JSONParser().parse(message.wire).objectValue!
            tampered["content"] = .object(JSONObject(["msgtype": "text", "body": "altered"]))
            var forged = try JSONParser().parse(alice.message("team", "next", at: Self.t0 + 2).wire).objectValue!
            forged["signature"] = .string(Base64.encode([UInt8](repeating: 7, count: 64)))
            // Bob's device signs as Bob, but the connection is Alice's: a copy of another account's event, in a room
            // Bob is not in.
            let foreign = [bob.message("team", "not a member", at: Self.t0 + 3)]
            let (tamperedEvent, forgedEvent) = (tampered, forged)
            let results = try await relay.connect(alice, token: aliceToken) { channel in
                _ = try await channel.publish(founding + [message])
                try await channel.send(.publish(id: 2, events: [.object(tamperedEvent), .object(forgedEvent)]))
                let frames = try await channel.read { if case .ack(2, _) = $0 { true } else { false } }
                guard case .ack(_, let bad) = frames.last else { return [RelayFrame.PublishResult]() }
                return bad + (try await channel.publish(foreign + [message], id: 3))
            }
            #expect(results.map(\.code) == ["content_hash_mismatch", "bad_signature", "unauthorized", nil])
            #expect(results.last?.verdict == .duplicate)
            #expect(relay.server.counts.rejections["bad_signature"] == 1)
        }
    }

    @Test func `frames that break the protocol get an error each, and repeated ones close the connection with 1007`() async throws {
        try await RelayFixture.withRelay { relay in
            let alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            let url = relay.relay.webSocket
            let replies = Replies()
            try await WebSocketClient.connect(url: url, logger: Logger(label: "test.raw")) { inbound, outbound, _ in
                try await outbound.write(.text(RelayFrame.auth(token: token, deviceKey: alice.publicKey).text))
                try await outbound.write(.binary(.init(bytes: [1, 2, 3])))
                try await outbound.write(.text("not json"))
                try await outbound.write(.text("{\"type\":\"launch\"}"))
                try await outbound.write(.text("{\"type\":\"publish\",\"id\":1,\"events\":\"all\"}"))
                try await outbound.write(.text("[]"))
                for try await message in inbound.messages(maxSize: 1 << 20) {
                    if case .text(let text) = message { replies.add(try RelayFrame(parsing: Array(text.utf8), from: .relay)) }
                }
            }
            let codes = replies.frames.compactMap { frame -> String? in if case .error(let code, _, _) = frame { code } else { nil } }
            #expect(replies.frames.first?.type == "ready")
            #expect(codes == ["malformed_frame", "malformed_frame", "unknown_type", "invalid_member", "malformed_frame"])
            #expect(relay.server.counts.badFrames == 5)
        }
    }

    @Test func `metrics count what the relay did, in Prometheus text, with the fan-out latency`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            let events = alice.create("team", at: Self.t0) + [alice.message("team", "hi", at: Self.t0 + 1)]
            var forged = try JSONParser().parse(events[1].wire).objectValue!
            forged["signature"] = .string(Base64.encode([UInt8](repeating: 9, count: 64)))
            let forgedEvent = forged
            try await relay.connect(alice, token: token) { channel in
                _ = try await channel.publish(events)
                try await channel.send(.publish(id: 2, events: [.object(forgedEvent)]))
                _ = try await channel.read { if case .ack(2, _) = $0 { true } else { false } }
            }
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: relay.relay.base + "/metrics"), timeout: .seconds(10))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(text.contains("parley_relay_events_in_total 3"), "\(text)")
            #expect(text.contains("parley_relay_rejections_total{reason=\"bad_signature\"} 1"), "\(text)")
            #expect(text.contains("parley_relay_connections_total 1"), "\(text)")
            #expect(text.contains("parley_relay_fanout_seconds_count 2"), "\(text)")
            #expect(!text.contains("alice") && !text.contains(token), "no user or secret in metrics")
        }
    }

    @Test func `the relay's metrics give delivery latency from receipts in clear, and pairs by state`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            let aliceToken = try await relay.account(for: alice)
            let bobToken = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1)]
            let first = alice.message("team", "first", at: Self.t0 + 10_000)
            let mine = founding + [first, alice.message("team", "second", at: Self.t0 + 11_000)]
            let join = bob.join("team", at: Self.t0 + 2)
            // Bob's receipt, 4 s after the first message, covers the first alone.
            let head = JSONValue.object(JSONObject(["sender_key": .string(alice.publicKey), "seq": .integer(first.event.seq), "hash": .string(first.hash)]))
            let receipt = bob.sign(
                "team", EventType.receipt,
                JSONObject(["receipt_type": "delivered", "event_id": .string(first.event.eventID), "heads": .array([head])]), at: Self.t0 + 14_000)
            try await relay.connect(alice, token: aliceToken) { channel in _ = try await channel.publish(mine) }
            try await relay.connect(bob, token: bobToken) { channel in
                let results = try await channel.publish([join, receipt])
                #expect(results.allSatisfy { $0.verdict == .stored }, "\(results)")
            }
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: relay.relay.base + "/metrics"), timeout: .seconds(10))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(text.contains("parley_relay_delivery_latency_seconds{quantile=\"0.5\"} 4\n"), "\(text)")
            #expect(text.contains("parley_relay_delivery_latency_seconds_count 1\n"), "\(text)")
            #expect(text.contains("parley_relay_message_deliveries{state=\"delivered\"} 1\n"), "\(text)")
            #expect(text.contains("parley_relay_message_deliveries{state=\"awaiting\"} 1\n"), "\(text)")
            #expect(!text.contains("team") && !text.contains("alice"), "no room or user in metrics")
        }
    }

    @Test func `members query a room over HTTP and get the signed events in pages; others are refused`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var mallory = TestDevice("mallory")
            let token = try await relay.account(for: alice)
            let malloryToken = try await relay.account(for: mallory)
            let events = alice.create("team", at: Self.t0) + (1...5).map { alice.message("team", "m\($0)", at: Self.t0 + Int64($0)) }
            _ = mallory.create("other", at: Self.t0)
            try await relay.connect(alice, token: token) { channel in _ = try await channel.publish(events) }
            func query(_ path: String, _ token: String, device: String?) async throws -> (status: Int, json: JSONValue?) {
                var request = HTTPClientRequest(url: relay.relay.base + path)
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                if let device { request.headers.add(name: "Parley-Device", value: device) }
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 16 << 20)
                return (Int(response.status.code), try? JSONParser(maxBytes: 16 << 20).parse(Array(buffer: body)))
            }
            let first = try await query("/v1/rooms/team/query?type=message&limit=3", token, device: alice.publicKey)
            #expect(first.status == 200)
            let page = try (first.json?["events"]?.arrayValue ?? []).map { try VerifiedEvent(verifying: Event(json: $0)) }
            #expect(page.map(\.hash) == events[2...4].map(\.hash))
            let cursor = try #require(first.json?["next_cursor"]?.stringValue)
            let second = try await query("/v1/rooms/team/query?type=message&limit=3&cursor=\(cursor)", token, device: alice.publicKey)
            #expect(second.json?["events"]?.arrayValue?.count == 2 && second.json?["next_cursor"] == JSONValue.null)

            // Mallory's account reads nothing of the room: not with her device, not without one, not naming Alice's.
            let outsider = try await query("/v1/rooms/team/query", malloryToken, device: mallory.publicKey)
            #expect(outsider.status == 403 && outsider.json?["error"]?["code"]?.stringValue == "not_member")
            for device in [nil, alice.publicKey] {
                let refused = try await query("/v1/rooms/team/query", malloryToken, device: device)
                #expect(refused.status == 403 && refused.json?["error"]?["code"]?.stringValue == "unknown_device")
            }
            #expect(try await query("/v1/rooms/team/query", String(repeating: "0", count: 64), device: alice.publicKey).status == 401)
            for bad in ["/v1/rooms/team/query?room=other", "/v1/rooms/team/query?since=soon", "/v1/rooms/team/query?limit=0", "/v1/rooms/team/query?text=m3"] {
                #expect(try await query(bad, token, device: alice.publicKey).status == 400, "\(bad)")
            }

            // 100 events of 60 KB: an answer carries at most 4 MiB of them, and its cursor reads on from where it ended.
            let big =
                alice.create("big", at: Self.t0)
                + (1...100).map { alice.message("big", String(repeating: "x", count: 60_000) + "\($0)", at: Self.t0 + Int64($0)) }
            try await relay.connect(alice, token: token) { channel in
                for chunk in big.chunks(of: 2) {
                    let results = try await channel.publish(Array(chunk))
                    #expect(results.allSatisfy { $0.verdict == .stored }, "\(results)")
                }
            }
            var read: [String] = []
            var next: String? = ""
            var pages = 0
            while let cursor = next {
                pages += 1
                let answer = try await query("/v1/rooms/big/query?limit=1000" + (cursor.isEmpty ? "" : "&cursor=\(cursor)"), token, device: alice.publicKey)
                let page = answer.json?["events"]?.arrayValue ?? []
                #expect(answer.status == 200 && answer.json?["events"] != nil, "\(answer.status) \(String(describing: answer.json).prefix(300))")
                #expect(!page.isEmpty && page.map { CanonicalJSON.encode($0).count }.reduce(0, +) <= 4 << 20)
                read += page.compactMap { $0["event_id"]?.stringValue }
                next = answer.json?["next_cursor"]?.stringValue
                if read.count > 200 { break }
            }
            #expect(read == big.map(\.event.eventID) && pages >= 2)
        }
    }

    @Test func `members upload a room's blocks once, fetch them whole or by range, and are held to their quota; others get nothing`() async throws {
        try await RelayFixture.withRelay(setting: \.blockQuotaBytes, to: 3 << 16) { relay in
            var alice = TestDevice("alice")
            var mallory = TestDevice("mallory")
            let token = try await relay.account(for: alice)
            let malloryToken = try await relay.account(for: mallory)
            let teamFounding = alice.create("team", at: Self.t0)
            let otherFounding = mallory.create("other", at: Self.t0)
            try await relay.connect(alice, token: token) { channel in _ = try await channel.publish(teamFounding) }
            func call(_ method: HTTPMethod, _ path: String, _ token: String, device: String, range: String? = nil, body: [UInt8]? = nil) async throws
                -> (status: Int, body: [UInt8])
            {
                var request = HTTPClientRequest(url: relay.relay.base + "/v1/" + path)
                request.method = method
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                request.headers.add(name: "Parley-Device", value: device)
                if let range { request.headers.add(name: "Range", value: range) }
                if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                return (Int(response.status.code), Array(buffer: try await response.body.collect(upTo: 17 << 20)))
            }
            func block(_ seed: UInt8) -> (id: BlockID, bytes: [UInt8]) {
                let bytes = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
                return (BlockID.of(bytes), bytes)
            }
            let (first, second, third, fourth) = (block(1), block(2), block(3), block(4))
            let client = RelayBlocksClient(relay: relay.relay, token: token, deviceKey: alice.publicKey)
            #expect(try await client.missing([first.id, second.id], roomID: "team") == [first.id, second.id])
            try await client.put(first.bytes, id: first.id, roomID: "team")
            #expect(try await client.missing([first.id, second.id], roomID: "team") == [second.id])
            // Sent again, it is not stored or counted again.
            #expect(try await call(.PUT, "rooms/team/blocks/\(first.id.hex)", token, device: alice.publicKey, body: first.bytes).status == 200)
            #expect(try await client.get(BlockRef(id: first.id, tier: .medium), roomID: "team") == first.bytes)
            let ranged = try await call(.GET, "rooms/team/blocks/\(first.id.hex)", token, device: alice.publicKey, range: "bytes=100-199")
            #expect(ranged.status == 206 && ranged.body == Array(first.bytes[100..<200]))
            let tail = try await call(.GET, "rooms/team/blocks/\(first.id.hex)", token, device: alice.publicKey, range: "bytes=-10")
            #expect(tail.status == 206 && tail.body == Array(first.bytes.suffix(10)))
            #expect(try await call(.GET, "rooms/team/blocks/\(first.id.hex)", token, device: alice.publicKey, range: "bytes=70000-").status == 416)

            // Bytes that are not the block they are sent as, and a length no tier has, are refused.
            let wrong = try await call(.PUT, "rooms/team/blocks/\(second.id.hex)", token, device: alice.publicKey, body: third.bytes)
            #expect(wrong.status == 400 && String(decoding: wrong.body, as: UTF8.self).contains("block_mismatch"))
            let cut = Array(second.bytes.dropLast())
            #expect(try await call(.PUT, "rooms/team/blocks/\(BlockID.of(cut).hex)", token, device: alice.publicKey, body: cut).status == 400)
            // Three blocks of 64 KiB fill the quota; the fourth is refused, saying so.
            try await client.put(second.bytes, id: second.id, roomID: "team")
            try await client.put(third.bytes, id: third.id, roomID: "team")
            do {
                try await client.put(fourth.bytes, id: fourth.id, roomID: "team")
                Issue.record("A block past the quota was taken.")
            } catch let error as RelayClientError {
                #expect(error.code == "quota_exceeded" && error.message.contains("quota"))
            }

            // Mallory: not a member of the room, nor with Alice's device; her own room does not hold Alice's blocks.
            let outsider = try await call(.GET, "rooms/team/blocks/\(first.id.hex)", malloryToken, device: mallory.publicKey)
            #expect(outsider.status == 403 && String(decoding: outsider.body, as: UTF8.self).contains("not_member"))
            #expect(try await call(.GET, "rooms/team/blocks/\(first.id.hex)", malloryToken, device: alice.publicKey).status == 403)
            #expect(try await call(.PUT, "rooms/team/blocks/\(fourth.id.hex)", malloryToken, device: mallory.publicKey, body: fourth.bytes).status == 403)
            try await relay.connect(mallory, token: malloryToken) { channel in _ = try await channel.publish(otherFounding) }
            #expect(try await call(.GET, "rooms/other/blocks/\(first.id.hex)", malloryToken, device: mallory.publicKey).status == 404)
            #expect(relay.server.counts.blockBytesIn == 3 * 65_536 && relay.server.counts.blockBytesOut >= 65_536 + 110)

            // Only the uploader takes a block back; that frees its quota, and the room no longer serves it.
            let notHers = try await call(.DELETE, "rooms/team/blocks/\(first.id.hex)", malloryToken, device: mallory.publicKey)
            #expect(notHers.status == 403 && String(decoding: notHers.body, as: UTF8.self).contains("not_uploader"))
            try await client.delete(first.id, roomID: "team")
            try await client.delete(first.id, roomID: "team")
            #expect(try await call(.GET, "rooms/team/blocks/\(first.id.hex)", token, device: alice.publicKey).status == 404)
            #expect(!FileManager.default.fileExists(atPath: relay.server.blocks.store.file(of: first.id)))
            try await client.put(fourth.bytes, id: fourth.id, roomID: "team")
        }
    }

    @Test func `an account that queries too often is told to wait, and other accounts are not held back`() async throws {
        try await RelayFixture.withRelay(setting: \.readsPerSecond, to: 0.2) { relay in
            var alice = TestDevice("alice")
            let bob = TestDevice("bob")
            let token = try await relay.account(for: alice)
            let bobToken = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0)
            try await relay.connect(alice, token: token) { channel in _ = try await channel.publish(founding) }
            func query(_ token: String, _ device: String) async throws -> (status: Int, code: String?) {
                var request = HTTPClientRequest(url: relay.relay.base + "/v1/rooms/team/query")
                request.headers.add(name: "Authorization", value: "Bearer \(token)")
                request.headers.add(name: "Parley-Device", value: device)
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                let body = try await response.body.collect(upTo: 1 << 20)
                return (Int(response.status.code), (try? JSONParser().parse(Array(buffer: body)))?["error"]?["code"]?.stringValue)
            }
            // A burst of ten seconds' worth (2 reads), then refusals: one more read each 5 s, however slow the machine.
            var statuses: [Int] = []
            let started = ContinuousClock.now
            for _ in 0..<6 { statuses.append(try await query(token, alice.publicKey).status) }
            let refills = Int((ContinuousClock.now - started) / .seconds(5))
            #expect(Array(statuses.prefix(2)) == [200, 200] && Set(statuses) == [200, 429])
            #expect(statuses.filter { $0 == 200 }.count <= 2 + refills, "\(statuses)")
            #expect(try await query(token, alice.publicKey).code == "rate_limited")
            // Bob's allowance is his own: not a member, he is refused for that, not for Alice's reads.
            #expect(try await query(bobToken, bob.publicKey).code == "not_member")
        }
    }

    @Test func `history comes in pages before an event, oldest first, saying whether older ones remain`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            let events = alice.create("team", at: Self.t0) + (1...5).map { alice.message("team", "m\($0)", at: Self.t0 + Int64($0)) }
            let pages = try await relay.connect(alice, token: token) { channel in
                _ = try await channel.publish(events)
                var pages: [(ids: [String], more: Bool)] = []
                var before: String?
                for id in Int64(10)..<14 {
                    try await channel.send(.history(id: id, roomID: "team", before: before, limit: 2))
                    let frames = try await channel.read { if case .page(id, _, _, _) = $0 { true } else { false } }
                    guard case .page(_, _, let values, let more) = frames.last else { break }
                    let ids = values.compactMap { $0["event_id"]?.stringValue }
                    pages.append((ids, more))
                    before = ids.first
                    if !more { break }
                }
                return pages
            }
            let ids = events.map(\.event.eventID)
            #expect(pages.map(\.ids) == [[ids[5], ids[6]], [ids[3], ids[4]], [ids[1], ids[2]], [ids[0]]])
            #expect(pages.map(\.more) == [true, true, true, false])
        }
    }

    @Test func `publish frames sent back to back are each acknowledged in order, seen by the next request, and reach readers in order`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            let aliceToken = try await relay.account(for: alice)
            let bobToken = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1)]
            let join = bob.join("team", at: Self.t0 + 2)
            let (aliceDevice, bobDevice) = (alice, bob)
            _ = try await relay.connect(aliceDevice, token: aliceToken) { try await $0.publish(founding) }
            _ = try await relay.connect(bobDevice, token: bobToken) { try await $0.publish([join]) }
            let messages = (1...60).map { alice.message("team", "m\($0)", at: Self.t0 + 10 + Int64($0)) }
            let received = try await relay.connect(bobDevice, token: bobToken) { reader in
                _ = try await reader.subscribe("team")
                let acks = try await relay.connect(aliceDevice, token: aliceToken) { writer in
                    // Sixty frames without waiting, then a history request: it must see all sixty.
                    for (offset, message) in messages.enumerated() {
                        try await writer.send(.publish(id: Int64(100 + offset), events: [try JSONParser().parse(message.wire)]))
                    }
                    try await writer.send(.history(id: 999, roomID: "team", before: nil, limit: 60))
                    return try await writer.read { if case .page(999, _, _, _) = $0 { true } else { false } }
                }
                let wanted = Set(messages.map(\.event.eventID))
                let ids = Mutex<[String]>([])
                _ = try await reader.read { frame in
                    guard case .events(_, let values) = frame else { return false }
                    return ids.withLock { ids in
                        ids += values.compactMap { $0["event_id"]?.stringValue }.filter(wanted.contains)
                        return ids.count >= wanted.count
                    }
                }
                return (acks, ids.withLock { $0 })
            }
            let ackIDs = received.0.compactMap { frame -> Int64? in
                if case .ack(let id, let results) = frame, results.map(\.verdict) == [.stored] { id } else { nil }
            }
            #expect(ackIDs == Array(100..<160))
            guard case .page(_, _, let page, _) = received.0.last else { throw RelayTestError("no page") }
            #expect(page.compactMap { $0["event_id"]?.stringValue } == messages.map(\.event.eventID))
            #expect(received.1 == messages.map(\.event.eventID))
        }
    }

    @Test func `live events waiting for a reader join into one frame within the frame bounds, and other frames keep their place`() throws {
        let queue = FrameQueue(maxBytes: 8 << 20)
        let event = Array(#"{"n":1}"#.utf8)
        for _ in 0..<3 { queue.push(events: event, count: 1, roomID: "team") }
        queue.push("{\"type\":\"synced\"}")
        queue.push(events: event, count: 1, roomID: "team")
        queue.push(events: event, count: 1, roomID: "other")
        // More than one frame may hold: they split at the event bound.
        for _ in 0..<(RelayFrame.maxEvents + 1) { queue.push(events: event, count: 1, roomID: "big") }
        var frames: [String] = []
        while case .frame(let text) = queue.take() { frames.append(text) }
        #expect(frames.count == 6)
        #expect(frames[0] == #"{"events":[{"n":1},{"n":1},{"n":1}],"room_id":"team","type":"events"}"#)
        #expect(frames[1] == #"{"type":"synced"}"#)
        #expect(frames[2] == #"{"events":[{"n":1}],"room_id":"team","type":"events"}"#)
        #expect(frames[3] == #"{"events":[{"n":1}],"room_id":"other","type":"events"}"#)
        let big = try frames[4...5].map { try JSONParser().parse(Array($0.utf8))["events"]?.arrayValue?.count }
        #expect(big == [RelayFrame.maxEvents, 1])
    }

    @Test func `a lagging reader gets the most urgent room's frames first, each room in its order, equal priorities in turn`() throws {
        let queue = FrameQueue(maxBytes: 8 << 20)
        func events(_ name: String) -> [UInt8] { Array(#"{"n":"\#(name)"}"#.utf8) }
        queue.push(events: events("a1"), count: 1, roomID: "a", priority: .low)
        queue.push(events: events("b1"), count: 1, roomID: "b")
        queue.push("{\"type\":\"synced\"}")
        queue.push(events: events("c1"), count: 1, roomID: "c")
        // Joins c1's frame: the frame is now high.
        queue.push(events: events("c2"), count: 1, roomID: "c", priority: .high)
        queue.push(events: events("b2"), count: 1, roomID: "b", priority: .urgent)
        queue.push(events: events("d1"), count: 1, roomID: "d", priority: .high)
        var frames: [String] = []
        while case .frame(let text) = queue.take() {
            let parsed = try JSONParser().parse(Array(text.utf8))
            frames.append(parsed["events"]?.arrayValue?.compactMap { $0["n"]?.stringValue }.joined(separator: ",") ?? "synced")
        }
        // b2 is urgent: b1 goes before it (its room's order); then the high frames in turn, the normal, the low.
        #expect(frames == ["b1", "b2", "c1,c2", "d1", "synced", "a1"])
        // Taken ahead of the head, the frames left the queue's byte count too: it takes the bound's worth again.
        #expect(queue.push(events: [UInt8](repeating: 0x20, count: 7 << 20), count: 1, roomID: "a"))
    }

    @Test func `a connection must authenticate first, with a live token and a device of its account`() async throws {
        try await RelayFixture.withRelay { relay in
            let alice = TestDevice("alice")
            let stranger = TestDevice("stranger")
            let token = try await relay.account(for: alice)
            await #expect(throws: RelayClientError.self) { try await relay.connect(alice, token: String(repeating: "0", count: 64)) { _ in } }
            do {
                try await relay.connect(stranger, token: token) { _ in }
                Issue.record("A device of no account was let in.")
            } catch let error as RelayClientError {
                #expect(error.message.contains("not one of the account's"))
            }
            // A token stolen after its logout opens nothing.
            try await relay.accounts.logout(token: token)
            do {
                try await relay.connect(alice, token: token) { _ in }
                Issue.record("A logged-out token was let in.")
            } catch let error as RelayClientError {
                #expect(error.message.contains("not valid"))
            }
        }
    }
}

final class Replies: Sendable {
    private let state = Mutex<[RelayFrame]>([])
    func add(_ frame: RelayFrame) { state.withLock { $0.append(frame) } }
    var frames: [RelayFrame] { state.withLock { $0 } }
}

@Suite struct RelaySubscribeFrameTests {
    @Test func `a node of many rooms subscribes in frames that each stay within the frame bound`() throws {
        let keys = (0..<400).map { Base64.encode(Array(SHA256.hash(data: Array("device \($0)".utf8)))) }
        let rooms = (0..<30).map { index in
            RelayFrame.RoomHeads(roomID: "room-\(index)", heads: Dictionary(uniqueKeysWithValues: keys.map { ($0, JSONValue.maxSafeInteger) }))
        }
        let frames = RelayTransport.subscribeFrames(rooms)
        #expect(frames.count > 1)
        var seen: [String] = []
        for frame in frames {
            #expect(frame.text.utf8.count <= RelayFrame.maxFrameBytes)
            guard case .subscribe(let part) = frame else { continue }
            seen += part.map(\.roomID)
            #expect(try RelayFrame(parsing: Array(frame.text.utf8), from: .client) == frame)
        }
        #expect(seen == rooms.map(\.roomID))
    }
}
