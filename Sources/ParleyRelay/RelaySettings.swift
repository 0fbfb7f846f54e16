import ParleyArgon2

/// How a relay runs: where it listens, where it keeps its data, who may register, and its limits.
public struct RelaySettings: Sendable {
    /// Who may make an account.
    public enum Registration: String, Sendable, CaseIterable {
        /// Anyone.
        case open
        /// Whoever has an invite token (`parley relay admin invite`).
        case invite
        /// No one: accounts are made by the operator.
        case closed
    }

    /// Where to listen; 127.0.0.1 unless configured.
    public var host = "127.0.0.1"
    /// 0 lets the system choose a free port.
    public var port = 8470
    /// The folder holding `accounts.sqlite` and `events.sqlite` (with a database: the store that caches its log).
    public var dataDirectory: String
    /// A PostgreSQL database shared with other relays of the deployment (`postgres://…`): accounts and the log of
    /// events live there; without one, the relay keeps everything in `dataDirectory`.
    public var databaseURL: String?
    /// The relay's base URL as clients reach it (`https://relay.example.net`): device challenges are bound to it.
    /// Defaults to `http://HOST:PORT`.
    public var publicURL: String?
    public var registration = Registration.open
    /// A PEM certificate chain and its private key: with both, the relay speaks HTTPS and WSS only.
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// How long a session lasts (ms): 30 days.
    public var sessionLifetimeMs: Int64 = 30 * 86_400_000
    /// How long a device challenge stays open (ms): 5 minutes.
    public var challengeLifetimeMs: Int64 = 300_000
    /// Argon2id's cost for account passwords: OWASP's recommendation (19 MiB, 2 passes, 1 lane).
    public var passwordParameters = Argon2idParameters(memoryKiB: 19 * 1024, iterations: 2, parallelism: 1)
    /// How many password hashes run at once; the cores are shared with delivery.
    public var passwordConcurrency = 2
    /// How many password checks may wait for a slot before more are refused.
    public var passwordQueue = 256
    /// The most bytes of frames waiting for one connection: a client that falls further behind is disconnected
    /// (close code 1008) and catches up when it reconnects.
    public var maxQueuedBytes = 8 << 20
    /// How often the relay pings each connection (s); one that has not answered the last ping by the next is closed.
    public var pingIntervalSeconds: Int64 = 30
    /// How long a new connection has to authenticate (ms).
    public var authTimeoutMs: Int64 = 10_000
    /// Malformed frames tolerated on one connection before it is closed (close code 1007).
    public var maxBadFrames = 5
    /// Origins of web pages allowed to open a WebSocket (`Origin` header); clients outside a browser send none.
    public var allowedOrigins: Set<String> = []
    /// Events per second one account may publish (a burst of 10 times that is allowed).
    public var publishEventsPerSecond = 1_000.0
    /// Bytes per second one account may publish.
    public var publishBytesPerSecond = 4.0 * 1024 * 1024
    /// HTTP reads per second one account may make (queries, blocks up and down; a burst of 10 times that is allowed).
    public var readsPerSecond = 50.0
    /// Typing notices per second one connection may send.
    public var typingPerSecond = 2.0
    /// Login attempts one IP address may make per minute, in a burst of as many (more are answered `rate_limited`).
    /// Raise it for clients behind one shared address.
    public var loginsPerAddressPerMinute = 20.0
    /// Connections open at once from one IP address (authenticated or not).
    public var maxConnectionsPerAddress = 2_000
    /// Connections open at once for one account.
    public var maxConnectionsPerAccount = 64
    /// Bytes of file blocks one account may keep uploaded to the relay, all rooms together.
    public var blockQuotaBytes: Int64 = 4 << 30

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    /// The origin challenges are bound to.
    public var origin: String {
        if let publicURL { return publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL }
        return "\(tlsCertificatePath == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
    }

    /// A hash no password matches, checked for unknown accounts so that they take as long as known ones.
    var decoyHash: String {
        "$argon2id$v=19$m=\(passwordParameters.memoryKiB),t=\(passwordParameters.iterations),p=\(passwordParameters.parallelism)$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    }
}
