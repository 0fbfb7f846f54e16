import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import ParleyClient
import ServiceLifecycle
import Synchronization

/// The node's local HTTP + WebSocket API (docs/API.md): what a browser page or a terminal UI uses to show rooms and
/// send, without keys or cryptography ever leaving the node.
///
/// A `Service`: run it in the node's `ServiceGroup`. Once listening it writes the port and its token to
/// `$PARLEY_HOME/node.json` (mode 0600) and removes that file when it stops. Every request needs the token. It also
/// serves the web page (`WebPage`).
public final class LocalAPI: Service, Sendable {
    public struct Settings: Sendable {
        /// Where to listen; 127.0.0.1 unless configured.
        public var host = "127.0.0.1"
        /// 0 lets the system choose a free port.
        public var port = 0
        /// Request bodies beyond this are refused (413) without being read further.
        public var maxBodyBytes = 1 << 20
        /// How many stream messages may wait for a slow WebSocket client before it is cut off.
        public var streamBacklog = 1_000
        /// A folder to read the web page's files from at each request instead of the compiled-in copies, for
        /// working on the page without rebuilding (`PARLEY_WEB_ASSETS`).
        public var webAssetsFolder: String?

        public init() {}
    }

    /// What the API has done, for tests and the node's log.
    public struct Counters: Sendable, Equatable {
        /// Requests refused for a missing or wrong token.
        public var unauthorized = 0
        /// Requests or WebSocket upgrades refused for a foreign `Origin`.
        public var foreignOrigins = 0
        /// WebSocket streams cut off because their client did not read.
        public var streamsCutOff = 0
        /// WebSocket streams open now.
        public var openStreams = 0
    }

    public let client: BucketClient
    public var node: Node { client.node }
    public let settings: Settings
    /// The secret every request must carry.
    let token: String
    let logger: Logger
    let listening = ListeningPort()
    let counters = Mutex(Counters())
    /// Origins whose pages may show the web page in a frame.
    let framingOrigins = Mutex<[String]>([])

    /// - Parameter token: the secret requests must carry; a fresh random one (256 bits) unless given.
    public init(client: BucketClient, settings: Settings = Settings(), logger: Logger, token: String = LocalAPI.newToken()) {
        self.client = client
        self.settings = settings
        self.logger = logger
        self.token = token
    }

    /// 32 random bytes from the system's generator, as 64 hex digits.
    public static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// Lets pages of `origin` (e.g. `http://127.0.0.1:8080`) show the web page in a frame, as the demo page of
    /// `parley web --demo` does; no page may otherwise.
    public func allowFraming(by origin: String) {
        framingOrigins.withLock { $0.append(origin) }
    }

    /// The counters so far.
    public var counts: Counters { counters.withLock { $0 } }

    /// The port the API listens on, once it does; `nil` if it stopped before listening.
    public func port() async -> Int? { await listening.wait() }

    public func run() async throws {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.add(middleware: Gate(guarded: self))
        addRoutes(to: router)
        addWebRoutes(to: router)
        let application = Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(ws: .init(maxFrameSize: 1 << 16))),
            configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: nil),
            onServerRunning: { [self] channel in self.started(port: channel.localAddress?.port) },
            logger: logger)
        defer { stopped() }
        try await application.run()
    }

    func started(port: Int?) {
        if let port {
            do {
                let info: JSONValue = [
                    "pid": .integer(Int64(getpid())), "port": .integer(Int64(port)), "url": .string("http://\(urlHost):\(port)"),
                    "token": .string(token),
                ]
                try node.home.replaceFile(atPath: node.home.nodeInfoPath, contents: CanonicalJSON.encode(info) + [0x0A], mode: 0o600)
            } catch {
                logger.error("Cannot write node.json: UIs cannot find the API", metadata: ["error": "\(ClientError(describing: error).message)"])
            }
            logger.info("Local API listening", metadata: ["url": "http://\(urlHost):\(port)", "info": "\(node.home.nodeInfoPath)"])
        }
        listening.announce(port)
    }

    func stopped() {
        let port = listening.stop()
        // Only our own file: a node started later on this home may have replaced it.
        if port != nil, let data = FileManager.default.contents(atPath: node.home.nodeInfoPath),
            case .object(let info)? = try? JSONParser().parse(Array(data.prefix { $0 != 0x0A })), info["token"]?.stringValue == token
        {
            try? FileManager.default.removeItem(atPath: node.home.nodeInfoPath)
        }
    }

    /// The host as a URL spells it.
    var urlHost: String { settings.host.contains(":") ? "[\(settings.host)]" : settings.host }

    /// Whether `candidate` is the token, in time that does not depend on where they differ.
    func isToken(_ candidate: Substring) -> Bool { constantTimeEquals(token, candidate) }
}

/// The port a server listens on, told to those waiting for it once it does.
final class ListeningPort: Sendable {
    private let state = Mutex<(port: Int?, waiters: [CheckedContinuation<Int?, Never>], stopped: Bool)>((nil, [], false))

    /// The port, while listening.
    var current: Int? { state.withLock { $0.port } }

    /// The port once listening; `nil` if the server stopped before it listened.
    func wait() async -> Int? {
        await withCheckedContinuation { continuation in
            let ready: Int?? = state.withLock { state in
                if state.port != nil || state.stopped { return .some(state.port) }
                state.waiters.append(continuation)
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    func announce(_ port: Int?) {
        let waiters = state.withLock { state in
            state.port = port
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    /// Marks the server stopped; returns the port it listened on, if it did.
    func stop() -> Int? {
        let (port, waiters) = state.withLock { state in
            state.stopped = true
            defer { state.waiters = [] }
            return (state.port, state.waiters)
        }
        for waiter in waiters { waiter.resume(returning: nil) }
        return port
    }
}

/// A server whose every request needs its token: the local API, and the demo page of `parley web --demo`.
protocol TokenGuarded: Sendable {
    /// Whether `candidate` is the token (in constant time).
    func isToken(_ candidate: Substring) -> Bool
    /// The host it listens on, as a URL spells it.
    var urlHost: String { get }
    /// The port it listens on, once it does: the cookie is named after it, since browsers keep cookies per host,
    /// not per port, and two servers on one host must not overwrite each other's.
    var listeningPort: Int? { get }
    /// What a browser gets for a page path opened without the token, if `path` is a page's.
    func unauthorizedPage(path: String) -> Response?
    func countForeignOrigin()
    func countUnauthorized()
}

extension TokenGuarded {
    /// Origins of pages this server serves, the only pages whose requests it takes; and the `ws://` origin that
    /// WebSocket clients outside a browser send for a loopback address (no browser sends a `ws:` origin).
    func isOwnOrigin(_ origin: String) -> Bool {
        guard let port = listeningPort else { return false }
        let hosts = Set([urlHost, "localhost", "127.0.0.1", "[::1]"])
        return hosts.contains { host in
            origin == "http://\(host):\(port)" || origin == "ws://\(host)" || origin == "ws://\(host):\(port)"
        }
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
func constantTimeEquals(_ expected: String, _ candidate: Substring) -> Bool {
    let expected = Array(expected.utf8)
    let given = Array(candidate.utf8)
    guard given.count == expected.count else { return false }
    var difference: UInt8 = 0
    for index in expected.indices { difference |= expected[index] ^ given[index] }
    return difference == 0
}

/// Refuses requests without the token or from a foreign page; hands the token to a browser as a cookie.
struct Gate<Guarded: TokenGuarded>: RouterMiddleware {
    typealias Context = BasicWebSocketRequestContext
    let guarded: Guarded

    /// The cookie holding the token of the server at `port`.
    static func cookieName(port: Int?) -> String { "parley_token_\(port ?? 0)" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // A page of another site may make the browser send requests here: its Origin gives it away. Requests made
        // outside a browser carry none.
        if let origin = request.headers[values: .origin].first(where: { !guarded.isOwnOrigin($0) }) {
            guarded.countForeignOrigin()
            throw APIError(.forbidden, ClientError(.notAllowed, "Requests from pages of \(origin) are refused.", remedy: "Use the page the node serves."))
        }
        if let authorization = request.headers[.authorization], authorization.hasPrefix("Bearer "),
            guarded.isToken(authorization.dropFirst("Bearer ".count))
        {
            return try await next(request, context)
        }
        let cookieName = Self.cookieName(port: guarded.listeningPort)
        if let cookie = request.cookies[cookieName], guarded.isToken(Substring(cookie.value)) {
            return try await next(request, context)
        }
        // A browser opens the URL printed with the token once; from then on it holds the token as a cookie that
        // scripts cannot read and other sites cannot send.
        if request.method == .get, let query = request.uri.queryParameters.get("token"), guarded.isToken(Substring(query)) {
            var response = try await next(request, context)
            response.headers[.setCookie] = "\(cookieName)=\(query); Path=/; HttpOnly; SameSite=Strict"
            return response
        }
        guarded.countUnauthorized()
        // Someone who opened the page's address without its token reads what to do, not JSON.
        if request.method == .get, let page = guarded.unauthorizedPage(path: request.uri.path) { return page }
        throw APIError(
            .unauthorized,
            ClientError(
                .notAllowed, "This request carries no valid token.",
                remedy: "Send `Authorization: Bearer TOKEN` with the token from node.json in the Parley home."))
    }
}

extension LocalAPI: TokenGuarded {
    var listeningPort: Int? { listening.current }

    func unauthorizedPage(path: String) -> Response? { WebPage.files[path] != nil ? WebPage.unauthorized : nil }

    func countForeignOrigin() { counters.withLock { $0.foreignOrigins += 1 } }

    func countUnauthorized() { counters.withLock { $0.unauthorized += 1 } }
}

/// A failure as the API answers it: the status, and the CLI's error JSON (`{"error": {"code", "message", …}}`).
struct APIError: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var error: ClientError

    init(_ status: HTTPResponse.Status, _ error: ClientError) {
        self.status = status
        self.error = error
    }

    /// A client error with the status its code means.
    init(_ error: ClientError) {
        self.init(APIError.status(of: error.code), error)
    }

    static func status(of code: ClientError.Code) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument, .invalidEvent, .noUsableLocation, .invalidConfiguration: .badRequest
        case .tooLarge: .contentTooLarge
        case .unknownRoom, .unknownEvent, .notFound: .notFound
        case .notAllowed: .forbidden
        case .ambiguousEvent, .alreadyInitialized, .alreadyExists: .conflict
        case .busy: .serviceUnavailable
        case .bucket, .incomplete: .badGateway
        default: .internalServerError
        }
    }

    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        jsonResponse(JSONOutput.error(error), status: status)
    }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
        body: .init(byteBuffer: ByteBuffer(bytes: CanonicalJSON.encode(value) + [0x0A])))
}
