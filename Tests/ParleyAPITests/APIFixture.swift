import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import ParleyAPI
import ParleyClient
import ParleyTesting
import Synchronization
import Testing

/// A node with a room, its local API listening on a free port of 127.0.0.1, and ways to talk to it.
final class APIFixture: Sendable {
    let directory = TemporaryDirectory()
    let node: Node
    let api: LocalAPI
    let token: String
    let port: Int
    private let server: Task<Void, any Error>

    init(user: String = "alice", settings: LocalAPI.Settings = LocalAPI.Settings()) async throws {
        let home = ParleyHome(path: directory.file(user))
        _ = try Identity.create(userID: user, home: home)
        node = try Node(home: home)
        _ = try node.createRoom("general", name: "General")
        token = LocalAPI.newToken()
        let api = LocalAPI(client: BucketClient(node: node), settings: settings, logger: Logger(label: "test.api"), token: token)
        self.api = api
        server = Task { try await api.run() }
        port = try #require(await api.port())
    }

    deinit { server.cancel() }

    var base: String { "http://127.0.0.1:\(port)" }

    /// Sends one request; with the token unless `token` says otherwise (`""` for none).
    func request(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, token: String? = nil, headers: [(String, String)] = [], timeout: Int64 = 30
    ) async throws -> Reply {
        try await apiRequest(method, base + path, body: body, token: token ?? self.token, headers: headers, timeout: timeout)
    }

    func post(_ path: String, _ json: JSONValue, token: String? = nil, timeout: Int64 = 30) async throws -> Reply {
        try await request(.POST, path, body: CanonicalJSON.encode(json), token: token, timeout: timeout)
    }

    /// Opens the stream, hands each message to `until` and returns the messages once it says so (or fails after 120 s:
    /// a guard against a stream that never says so, generous because a loaded machine runs tests slowly).
    /// `opened` runs once the stream's first message (`ready`) arrived: what it does is seen on the stream.
    func stream(
        headers: HTTPFields = [:], opened: @escaping @Sendable () async throws -> Void = {}, until done: @escaping @Sendable ([JSONValue]) -> Bool
    ) async throws -> [JSONValue] {
        var allFields: HTTPFields = [.authorization: "Bearer \(token)"]
        allFields.append(contentsOf: headers)
        let fields = allFields
        let received = Received()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await WebSocketClient.connect(
                    url: "ws://127.0.0.1:\(self.port)/v1/stream", configuration: .init(additionalHeaders: fields), logger: Logger(label: "test.ws")
                ) { inbound, _, _ in
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        guard case .text(let text) = message, let value = try? JSONParser(keysWithinBMP: false).parse(Array(text.utf8)) else { continue }
                        let all = received.messages.withLock {
                            $0.append(value)
                            return $0
                        }
                        if all.count == 1 { try await opened() }
                        if done(all) { return }
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(120))
                throw CancellationError()
            }
            defer { group.cancelAll() }
            try await group.next()
        }
        return received.messages.withLock { $0 }
    }
}

struct Reply {
    var status: Int
    var headers: HTTPHeaders
    var body: [UInt8]
    var json: JSONValue? { try? JSONParser(keysWithinBMP: false).parse(body) }
    var errorCode: String? { json?["error"]?["code"]?.stringValue }
}

/// Sends one request to `url`, with `token` unless it is empty; `timeout` (seconds) counts from the call, time waiting
/// for one of the client's connections included.
func apiRequest(
    _ method: HTTPMethod, _ url: String, body: [UInt8]? = nil, token: String, headers: [(String, String)] = [], timeout: Int64 = 30
) async throws -> Reply {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if !token.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(body) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(timeout))
    let bytes = try await response.body.collect(upTo: 1 << 24)
    return Reply(status: Int(response.status.code), headers: response.headers, body: Array(bytes.readableBytesView))
}

final class Received: Sendable {
    let messages = Mutex<[JSONValue]>([])
}

/// Waits until `condition` holds, checking every 10 ms, for at most `seconds`.
func waitUntil(seconds: Double = 30, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try condition()
}
