import Foundation
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import ParleyCore
import ParleyRelayClient
import ParleyTesting
import Testing

@testable import ParleyRelay

@Suite struct RelayLimitTests {
    static let t0: Int64 = 1_760_000_000_000

    /// Waits until `condition` holds, for at most 30 s.
    static func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(30)
        while !condition() {
            guard Date() < deadline else { throw RelayTestError("Not within 30 s: \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Connects without the Parley client, sends `frames` as given, and returns the relay's close code.
    /// - Parameter waitingForClose: read until the relay closes; without it, the client closes at once.
    static func rawSession(
        _ relay: RelayFixture, _ frames: [WebSocketOutboundWriter.OutboundFrame], waitingForClose: Bool = true
    ) async throws -> WebSocketErrorCode? {
        let close = try await WebSocketClient.connect(
            url: relay.relay.webSocket, configuration: .init(maxFrameSize: 1 << 20), logger: Logger(label: "test.raw")
        ) { inbound, outbound, _ in
            for frame in frames { try await outbound.write(frame) }
            if waitingForClose { for try await _ in inbound.messages(maxSize: 1 << 20) {} }
        }
        return close?.closeCode
    }

    @Test func `a client that never reads is disconnected with 1008 while the others are served`() async throws {
        try await RelayFixture.withRelay(setting: \.maxQueuedBytes, to: 64 << 10) { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            let aliceToken = try await relay.account(for: alice)
            let bobToken = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1)]
            let join = bob.join("team", at: Self.t0 + 2)
            let padding = String(repeating: "x", count: 40_000)
            let messages = (0..<300).map { alice.message("team", "\($0) \(padding)", at: Self.t0 + 10 + Int64($0)) }
            _ = try await relay.connect(alice, token: aliceToken) { try await $0.publish(founding) }
            let bobDevice = bob
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Bob subscribes and then stops reading.
                    try await relay.connect(bobDevice, token: bobToken) { channel in
                        _ = try await channel.subscribe("team")
                        #expect(try await channel.publish([join]).map(\.verdict) == [.stored])
                        try await Self.waitUntil("Bob is cut off") { relay.server.slowConsumers == 1 }
                    }
                }
                try await Self.waitUntil("Bob joined") { (try? relay.server.events.store.chainHeads(roomID: "team")[bobDevice.publicKey]) == 1 }
                let results = try await relay.connect(alice, token: aliceToken) { channel in
                    var results: [RelayFrame.PublishResult] = []
                    for (index, start) in stride(from: 0, to: messages.count, by: 3).enumerated() {
                        results += try await channel.publish(Array(messages[start..<min(messages.count, start + 3)]), id: Int64(index + 10))
                    }
                    return results
                }
                #expect(results.allSatisfy { $0.verdict == .stored })
                try await group.waitForAll()
            }
            #expect(relay.server.slowConsumers == 1)
        }
    }

    @Test func `a kicked member stops receiving the room at the event that removed them`() async throws {
        try await RelayFixture.withRelay { relay in
            var alice = TestDevice("alice")
            var bob = TestDevice("bob")
            let aliceToken = try await relay.account(for: alice)
            let bobToken = try await relay.account(for: bob)
            let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1)]
            let join = bob.join("team", at: Self.t0 + 2)
            let kick = alice.membership("team", .leave, of: "bob", at: Self.t0 + 3)
            let after = alice.message("team", "after bob left", at: Self.t0 + 4)
            _ = try await relay.connect(alice, token: aliceToken) { try await $0.publish(founding) }
            let (aliceDevice, bobDevice) = (alice, bob)
            let seen = try await relay.connect(bobDevice, token: bobToken) { channel in
                _ = try await channel.subscribe("team")
                _ = try await channel.publish([join])
                _ = try await relay.connect(aliceDevice, token: aliceToken) { try await $0.publish([kick, after]) }
                // Fan-out to Bob happened before Alice's ack: what Bob reads up to the answer to his next request is
                // all the relay sent him.
                try await channel.send(.history(id: 5, roomID: "team", before: nil, limit: 10))
                return try await channel.read { if case .error(_, _, 5) = $0 { true } else { false } }
            }
            let ids = seen.flatMap { frame -> [String] in
                if case .events(_, let events) = frame { events.compactMap { $0["event_id"]?.stringValue } } else { [] }
            }
            #expect(!ids.contains(after.event.eventID) && !ids.contains(kick.event.eventID), "\(ids)")
            #expect(seen.last.map { if case .error("not_a_member", _, _) = $0 { true } else { false } } == true)
        }
    }

    @Test func `oversized, non-UTF-8 and unauthenticated frames close the connection with their codes, and the relay goes on`() async throws {
        try await RelayFixture.withRelay { relay in
            let alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            let auth = WebSocketOutboundWriter.OutboundFrame.text(RelayFrame.auth(token: token, deviceKey: alice.publicKey).text)
            #expect(try await Self.rawSession(relay, [auth, .text(String(repeating: " ", count: RelayFrame.maxFrameBytes + 10))]) == .messageTooLarge)
            let invalidUTF8 = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(bytes: [0x7B, 0xFF, 0xFE, 0x7D]))
            #expect(try await Self.rawSession(relay, [auth, .custom(invalidUTF8)]) == .dataInconsistentWithMessage)
            #expect(try await Self.rawSession(relay, [.text(RelayFrame.subscribe([]).text)]) == .policyViolation)
            // Still serving.
            let events = try await relay.connect(alice, token: token) { try await $0.subscribe("team").events }
            #expect(events.isEmpty)
        }
    }

    @Test func `10,000 connections opened and closed in a burst leave the relay serving and holding none`() async throws {
        try await RelayFixture.withRelay(setting: \.maxConnectionsPerAddress, to: 20_000) { relay in
            let alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<10_000 {
                    if index >= 64 { try await group.next() }
                    group.addTask {
                        _ = try await Self.rawSession(relay, index % 2 == 0 ? [] : [.text("{\"type\":\"auth\"}")], waitingForClose: index % 2 == 1)
                    }
                }
                try await group.waitForAll()
            }
            let events = try await relay.connect(alice, token: token) { try await $0.subscribe("team").events }
            #expect(events.isEmpty)
            try await Self.waitUntil("every connection closed") { relay.server.openConnections == 0 }
        }
    }

    @Test func `an account that publishes faster than its allowance gets rate_limited and nothing is stored`() async throws {
        try await RelayFixture.withRelay(setting: \.publishEventsPerSecond, to: 2.0) { relay in
            var alice = TestDevice("alice")
            let token = try await relay.account(for: alice)
            let founding = alice.create("team", at: Self.t0)
            let burst = (0..<30).map { alice.message("team", "\($0)", at: Self.t0 + 1 + Int64($0)) }
            let results = try await relay.connect(alice, token: token) { channel in
                _ = try await channel.publish(founding)
                return try await channel.publish(burst, id: 2)
            }
            #expect(results.count == 30 && results.allSatisfy { $0.code == "rate_limited" })
            #expect(try relay.server.events.store.chainHeads(roomID: "team") == [alice.publicKey: 2])
        }
    }

    @Test func `failed logins run out per account but not for an address that logged in before, and refill within minutes`() throws {
        var limits = LoginLimits()
        let now: Int64 = 1_000_000
        try limits.admit(userID: "alice", address: "10.0.0.1", nowMs: now)
        limits.succeeded(userID: "alice", address: "10.0.0.1")
        for attempt in 0..<10 {
            try limits.admit(userID: "alice", address: "10.0.0.\(100 + attempt)", nowMs: now)
            limits.failed(userID: "alice", nowMs: now)
        }
        #expect(throws: RelayError.self) { try limits.admit(userID: "alice", address: "10.0.0.200", nowMs: now) }
        try limits.admit(userID: "alice", address: "10.0.0.1", nowMs: now)
        try limits.admit(userID: "alice", address: "10.0.0.200", nowMs: now + 30_000)
        for _ in 0..<20 { try limits.admit(userID: "bob", address: "10.0.0.7", nowMs: now) }
        #expect(throws: RelayError.self) { try limits.admit(userID: "carol", address: "10.0.0.7", nowMs: now) }
    }

    @Test func `an operator can allow more logins per address, for clients behind one shared address`() throws {
        var limits = LoginLimits(addressLoginsPerMinute: 100)
        let now: Int64 = 1_000_000
        for index in 0..<100 { try limits.admit(userID: "user\(index)", address: "10.0.0.7", nowMs: now) }
        #expect(throws: RelayError.self) { try limits.admit(userID: "user100", address: "10.0.0.7", nowMs: now) }
        // A hundred a minute: one more after 0.6 s.
        try limits.admit(userID: "user100", address: "10.0.0.7", nowMs: now + 600)
    }
}
