import Foundation
import ParleyCore
import ParleyRelay
import ParleyTesting
import Testing

@testable import ParleyRelayClient

/// Relays sharing one PostgreSQL database (`scripts/postgres-test-server`'s), each test in a database of its own.
@Suite(.enabled(if: PostgresTestServer.isAvailable, "needs the PostgreSQL test server (scripts/postgres-test-server)"))
struct RelayDatabaseTests {
    static let t0: Int64 = 1_760_000_000_000

    static func settings(_ databaseURL: String) -> RelaySettings {
        var settings = RelaySettings(dataDirectory: "")
        settings.databaseURL = databaseURL
        return settings
    }

    static func heads(_ relay: RelayFixture, _ roomID: String) -> [String: Int64] {
        (try? relay.server.events.store.chainHeads(roomID: roomID)) ?? [:]
    }

    @Test func `two relays on one database share accounts and events: a client of one gets what is published at the other`() async throws {
        let settings = Self.settings(try PostgresTestServer.newDatabase())
        try await RelayFixture.withRelay(settings: settings) { relayA in
            try await RelayFixture.withRelay(settings: settings) { relayB in
                var alice = TestDevice("alice")
                var bob = TestDevice("bob")
                // Accounts live in the database: made at one relay, a session and a device are good at the other.
                let aliceToken = try await relayA.account(for: alice)
                let bobToken = try await relayB.account(for: bob)
                let bobAtA = try await relayA.accounts.login(userID: bob.userID, password: "correct horse battery")
                #expect(bobAtA.token != bobToken)

                let founding = alice.create("team", at: Self.t0) + [alice.invite("team", bob, at: Self.t0 + 1)]
                let bobJoin = bob.join("team", at: Self.t0 + 10)
                let hello = bob.message("team", "hello through relay B", at: Self.t0 + 11)
                let (aliceKey, bobDevice) = (alice.publicKey, bob)
                let received = try await relayA.connect(alice, token: aliceToken) { channel in
                    #expect(try await channel.publish(founding).map(\.verdict) == [.stored, .stored, .stored])
                    _ = try await channel.subscribe("team", heads: [aliceKey: 3])
                    try await RelayLimitTests.waitUntil("relay B holds the room") { Self.heads(relayB, "team")[aliceKey] == 3 }
                    try await relayB.connect(bobDevice, token: bobToken) { bobChannel in
                        let caughtUp = try await bobChannel.subscribe("team")
                        #expect(caughtUp.events.map(\.hash) == founding.map(\.hash))
                        #expect(try await bobChannel.publish([bobJoin, hello]).map(\.verdict) == [.stored, .stored])
                    }
                    // Published at B, pushed live to Alice at A.
                    let frames = try await channel.read {
                        if case .events(_, let events) = $0 { events.contains { $0["event_id"]?.stringValue == hello.event.eventID } } else { false }
                    }
                    return frames.flatMap { frame -> [String] in
                        if case .events(_, let events) = frame { events.compactMap { $0["event_id"]?.stringValue } } else { [] }
                    }
                }
                #expect(received == [bobJoin.event.eventID, hello.event.eventID])
                // A session ended at one relay ends at all.
                try await relayA.accounts.logout(token: bobAtA.token)
                await #expect(throws: RelayClientError.self) {
                    try await relayB.connect(bobDevice, token: bobAtA.token) { _ = try await $0.subscribe("team") }
                }
            }
        }
    }

    @Test func `a relay with an empty store fills it from the database before it serves`() async throws {
        let settings = Self.settings(try PostgresTestServer.newDatabase())
        var alice = TestDevice("alice")
        let founding = alice.create("team", at: Self.t0)
        let messages = (1...50).map { alice.message("team", "message \($0)", at: Self.t0 + Int64($0)) }
        let aliceDevice = alice
        try await RelayFixture.withRelay(settings: settings) { relay in
            let token = try await relay.account(for: aliceDevice)
            let results = try await relay.connect(aliceDevice, token: token) { try await $0.publish(founding + messages) }
            #expect(results.allSatisfy { $0.verdict == .stored })
        }
        // A relay on a data folder of its own, as one replacing a relay that lost its disk.
        try await RelayFixture.withRelay(settings: settings) { relay in
            #expect(Self.heads(relay, "team") == [aliceDevice.publicKey: Int64(founding.count + messages.count)])
            let token = try await relay.accounts.login(userID: aliceDevice.userID, password: "correct horse battery").token
            let view = try await relay.connect(aliceDevice, token: token) { try await $0.subscribe("team") }
            #expect(view.events.map(\.hash) == (founding + messages).map(\.hash))
        }
    }

    @Test func `while PostgreSQL restarts, publishes are acknowledged only once the database holds them, and none is lost`() async throws {
        let settings = Self.settings(try PostgresTestServer.newDatabase())
        var alice = TestDevice("alice")
        let founding = alice.create("team", at: Self.t0)
        let messages = (1...300).map { alice.message("team", "message \($0)", at: Self.t0 + Int64($0)) }
        let aliceDevice = alice
        try await RelayFixture.withRelay(settings: settings) { relayA in
            try await RelayFixture.withRelay(settings: settings) { relayB in
                let token = try await relayA.account(for: aliceDevice)
                let refused = try await relayA.connect(aliceDevice, token: token) { channel in
                    #expect(try await channel.publish(founding).allSatisfy { $0.verdict == .stored })
                    var refused: [String: Int] = [:]
                    var next = 0
                    var id: Int64 = 1
                    var restart: Task<Void, any Error>?
                    // One event at a time, each again until it is acknowledged, as a client's outbox does.
                    while next < messages.count {
                        id += 1
                        let result = try await channel.publish([messages[next]], id: id)[0]
                        if result.verdict == .stored || result.verdict == .duplicate {
                            next += 1
                        } else {
                            refused[result.code ?? "none", default: 0] += 1
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        if next == 100, restart == nil { restart = Task.detached { try PostgresTestServer.control("restart") } }
                    }
                    try await restart?.value
                    return refused
                }
                // Only the database's absence refuses an event.
                #expect(Set(refused.keys).isSubset(of: ["unavailable"]))
                try await RelayLimitTests.waitUntil("relay B holds every acknowledged event") {
                    Self.heads(relayB, "team")[aliceDevice.publicKey] == Int64(founding.count + messages.count)
                }
            }
        }
    }
}
