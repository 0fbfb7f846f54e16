import Foundation
import Logging
import ParleyCore
import ParleyRelay
import ParleyRelayClient
import ParleyTesting
import Synchronization

/// A relay on 127.0.0.1 (a free port) over a fresh data folder, for one test.
struct RelayFixture: Sendable {
    let server: RelayServer
    let relay: RelayURL
    let directory: TemporaryDirectory

    /// Runs `body` with a relay whose setting at `keyPath` is `value`.
    static func withRelay<T: Sendable, Value>(
        setting keyPath: WritableKeyPath<RelaySettings, Value>, to value: Value, _ body: @escaping @Sendable (RelayFixture) async throws -> T
    ) async throws -> T {
        var settings = RelaySettings(dataDirectory: "")
        settings[keyPath: keyPath] = value
        return try await withRelay(settings: settings, body)
    }

    static func withRelay<T: Sendable>(
        settings given: RelaySettings = RelaySettings(dataDirectory: ""), _ body: @escaping @Sendable (RelayFixture) async throws -> T
    ) async throws -> T {
        let directory = TemporaryDirectory()
        var settings = given
        settings.dataDirectory = directory.file("relay")
        settings.port = 0
        let server = try RelayServer(settings: settings, logger: Logger(label: "test.relay"))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await server.run()
                return nil
            }
            guard let port = await server.port() else { throw RelayTestError("The relay did not start.") }
            let fixture = RelayFixture(server: server, relay: try RelayURL("http://127.0.0.1:\(port)"), directory: directory)
            group.addTask { try await body(fixture) }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw RelayTestError("The relay stopped before the test ended.")
        }
    }

    var accounts: RelayAccountsClient { RelayAccountsClient(relay: relay) }

    /// Registers the device's user, logs in and adds the device.
    /// - Returns: the session token.
    func account(for device: TestDevice, password: String = "correct horse battery") async throws -> String {
        try await accounts.register(userID: device.userID, password: password)
        let session = try await accounts.login(userID: device.userID, password: password)
        let key = device.key
        try await accounts.addDevice(token: session.token, userID: device.userID, deviceKey: device.publicKey) { key.sign($0) }
        return session.token
    }

    /// Connects as `device` and runs `body`.
    func connect<T: Sendable>(_ device: TestDevice, token: String, _ body: @escaping @Sendable (RelayChannel) async throws -> T) async throws -> T {
        try await RelayChannel.open(relay, token: token, deviceKey: device.publicKey, logger: Logger(label: "test.client"), body: body)
    }
}

struct RelayTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension RelayChannel {
    /// Reads frames until `done` says the last one is what was waited for; fails after 20 s.
    func read(until done: @escaping @Sendable (RelayFrame) -> Bool) async throws -> [RelayFrame] {
        try await withThrowingTaskGroup(of: [RelayFrame].self) { group in
            group.addTask {
                var frames: [RelayFrame] = []
                while let frame = try await self.next() {
                    frames.append(frame)
                    if done(frame) { return frames }
                }
                throw RelayTestError("The connection closed after \(frames.map(\.type)).")
            }
            group.addTask {
                try await Task.sleep(for: .seconds(20))
                throw RelayTestError("No such frame within 20 s.")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// Publishes events and waits for their ack.
    func publish(_ events: [VerifiedEvent], id: Int64 = 1) async throws -> [RelayFrame.PublishResult] {
        try await send(.publish(id: id, events: events.map { try JSONParser().parse($0.wire) }))
        let frames = try await read { if case .ack(id, _) = $0 { true } else { false } }
        guard case .ack(_, let results) = frames.last else { throw RelayTestError("no ack") }
        return results
    }

    /// Subscribes to a room with the given heads and reads until it is synced.
    func subscribe(_ roomID: String, heads: [String: Int64] = [:]) async throws -> (heads: [String: Int64], events: [VerifiedEvent]) {
        try await send(.subscribe([.init(roomID: roomID, heads: heads)]))
        let frames = try await read { if case .synced(roomID) = $0 { true } else { false } }
        var relayHeads: [String: Int64] = [:]
        var events: [VerifiedEvent] = []
        for frame in frames {
            if case .heads(roomID, let heads) = frame { relayHeads = heads }
            if case .events(roomID, let values) = frame { events += try values.map { try VerifiedEvent(parsing: CanonicalJSON.encode($0)) } }
        }
        return (relayHeads, events)
    }
}
