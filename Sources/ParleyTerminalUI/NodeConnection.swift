import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import ParleyClient

/// The terminal UI's way to the node: its local API (docs/API.md) over HTTP, and its stream over a WebSocket, with the
/// token from node.json. Nothing here holds a key or opens the store.
public struct NodeConnection: Sendable {
    /// The API's base URL (`http://127.0.0.1:PORT`).
    public var url: String
    public var token: String

    public init(url: String, token: String) {
        self.url = url
        self.token = token
    }

    /// A client that says at once when the node is not there, rather than trying to connect again until the deadline.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(2)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// A failed request, as the API explains it.
    public struct Failure: Error, Sendable {
        public var message: String
        public var remedy: String?
        /// 0 when the node did not answer.
        public var status: Int
    }

    public func get(_ path: String) async throws -> JSONValue { try await request(.GET, path, body: nil) }

    public func post(_ path: String, _ body: JSONValue) async throws -> JSONValue { try await request(.POST, path, body: body) }

    /// Sends the file at `file` as the body of a POST to `path` (an upload), read 1 MiB at a time; `progress` is told
    /// the bytes handed on and the total each time the whole percent they make changes.
    public func upload(_ path: String, file: String, progress: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in }) async throws -> JSONValue {
        let descriptor = open(file, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Failure(message: "Cannot open \(file): \(String(cString: strerror(errno))).", remedy: nil, status: 0) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw Failure(message: "\(file) is not a regular file.", remedy: "Give the path of a file.", status: 0)
        }
        var request = HTTPClientRequest(url: url + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.body = .stream(FileChunks(descriptor: descriptor, total: Int64(status.st_size), progress: progress), length: .known(Int64(status.st_size)))
        return try await send(request, timeout: .hours(1))
    }

    func request(_ method: HTTPMethod, _ path: String, body: JSONValue?) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: CanonicalJSON.string(body)))
        }
        return try await send(request, timeout: .seconds(30))
    }

    func send(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> JSONValue {
        let status: Int
        let bytes: ByteBuffer
        do {
            let response = try await Self.client.execute(request, timeout: timeout)
            status = Int(response.status.code)
            bytes = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw Failure(
                message: "The node is not answering.", remedy: "Is it still running? Start it with `parley node`, or run `parley chat` alone.",
                status: 0)
        }
        let value = try? JSONParser(keysWithinBMP: false).parse(Array(bytes.readableBytesView))
        guard (200..<300).contains(status) else {
            throw Failure(
                message: value?["error"]?["message"]?.stringValue ?? "The node answered \(status).", remedy: value?["error"]?["remedy"]?.stringValue,
                status: status)
        }
        return value ?? .null
    }

    /// Runs the stream until it ends or fails, handing each message to `receive`.
    public func stream(_ receive: @escaping @Sendable (JSONValue) -> Void) async throws {
        let websocketURL = url.replacingOccurrences(of: "http://", with: "ws://") + "/v1/stream"
        let headers: HTTPFields = [.authorization: "Bearer \(token)"]
        var logger = Logger(label: "parley.chat.stream")
        logger.logLevel = .critical
        try await WebSocketClient.connect(url: websocketURL, configuration: .init(additionalHeaders: headers), logger: logger) { inbound, _, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message, let value = try? JSONParser(keysWithinBMP: false).parse(Array(text.utf8)) else { continue }
                receive(value)
            }
        }
    }

    /// `text` made safe for a URL path segment (room and event ids use only safe characters; this is for what a user types).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? text
    }

    /// `text` made safe for a query value.
    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}

/// A file's bytes, 1 MiB at a time, for a request body; the descriptor is closed at the end.
struct FileChunks: AsyncSequence, Sendable {
    let descriptor: Int32
    let total: Int64
    let progress: @Sendable (Int64, Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        let descriptor: Int32
        let total: Int64
        let progress: @Sendable (Int64, Int64) -> Void
        var done = false
        var sent: Int64 = 0
        var percent = -1

        mutating func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            var buffer = ByteBuffer()
            let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { bytes in
                while true {
                    let count = read(descriptor, bytes.baseAddress!, bytes.count)
                    if count < 0, errno == EINTR { continue }
                    guard count >= 0 else {
                        throw NodeConnection.Failure(message: "Cannot read the file: \(String(cString: strerror(errno))).", remedy: nil, status: 0)
                    }
                    return count
                }
            }
            guard count > 0 else {
                done = true
                close(descriptor)
                return nil
            }
            sent += Int64(count)
            let now = total > 0 ? Int(sent * 100 / total) : 100
            if now != percent {
                percent = now
                progress(sent, total)
            }
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(descriptor: descriptor, total: total, progress: progress) }
}
