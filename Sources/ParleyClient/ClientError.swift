import ParleyBucket
import ParleyRelayClient
import ParleyStore
import ParleySync

/// A client error: what went wrong, in the user's terms, and what to do about it. Safe to show anyone: it never
/// carries message text, keys' secrets or tokens.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        public let name: String
        public static let notInitialized = Code(name: "not_initialized")
        public static let alreadyInitialized = Code(name: "already_initialized")
        public static let invalidArgument = Code(name: "invalid_argument")
        public static let unknownRoom = Code(name: "unknown_room")
        public static let unknownEvent = Code(name: "unknown_event")
        public static let notAllowed = Code(name: "not_allowed")
        public static let io = Code(name: "io")
        public static let bucket = Code(name: "bucket")
        /// An invite or link code lists no location (bucket, relay, peer) this version can reach the room at.
        public static let noUsableLocation = Code(name: "no_usable_location")
        public static let ambiguousEvent = Code(name: "ambiguous_event")
        public static let tooLarge = Code(name: "too_large")
        /// Another process holds what this one needs (the home's sync lock).
        public static let busy = Code(name: "busy")
        /// The store file is damaged: unreadable as a database.
        public static let storeDamaged = Code(name: "store_damaged")
        /// The home has a device key but no store.
        public static let storeMissing = Code(name: "store_missing")
        /// A setting's value (in `config.toml` or a `PARLEY_*` variable) is wrong, or `config.toml` cannot be read.
        public static let invalidConfiguration = Code(name: "invalid_configuration")
        /// An event of this node's own is invalid (not the next of its chain, already stored).
        public static let invalidEvent = Code(name: "invalid_event")
        /// Any other failure: one that no code above describes (SQLite refusing a statement is a bug to report).
        public static let internalError = Code(name: "internal")
        /// No live session at a relay: log in.
        public static let notLoggedIn = Code(name: "not_logged_in")
        /// A relay refused what the node sent it.
        public static let relayRefused = Code(name: "relay_refused")
        /// What was asked for is not where it was looked for (a block not in a bucket).
        public static let notFound = Code(name: "not_found")
        /// A file's blocks could not all be fetched and checked: nothing of it was handed out.
        public static let incomplete = Code(name: "incomplete")
        /// The path to write exists already; it is never replaced.
        public static let alreadyExists = Code(name: "already_exists")

        /// The store's code, under the same name.
        public init(_ code: StoreError.Code) { name = code.name }

        init(name: String) { self.name = name }
    }

    public var code: Code
    public var message: String
    /// Items the message refers to, one a line (the events an ambiguous reference matches).
    public var details: [String]
    public var remedy: String?
    /// For a `.bucket` error: how the bucket failed.
    public var bucketFailure: BucketError.Kind?

    public init(_ code: Code, _ message: String, details: [String] = [], remedy: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
        self.remedy = remedy
    }

    /// A bucket's failure, with its kind.
    public init(_ error: BucketError) {
        self.init(.bucket, error.message)
        bucketFailure = error.kind
    }

    /// A store's failure, with its code.
    public init(_ error: StoreError) {
        self.init(Code(error.code), error.message, remedy: error.remedy)
    }

    /// Any error as a client error that keeps its code: a client error as it is, a bucket's failure with its kind, a
    /// transport's with its code, a store's with its code (SQLite's by their kind: a full disk, a read-only file, a busy or damaged store); a
    /// damaged store is told with the way back from its buckets when `home` is known. Anything else is `.internalError`,
    /// with the error's description as its message.
    public init(describing error: any Error, home: ParleyHome? = nil) {
        if let error = error as? ClientError {
            self = error
        } else if let error = error as? BucketError {
            self.init(error)
        } else if let error = error as? RelayClientError {
            self.init(Code(name: error.code), error.message, remedy: error.remedy)
        } else if let error = error as? TransportError {
            self.init(Code(name: error.code), error.message, remedy: error.remedy)
        } else if let error = StoreError(error, path: home?.storePath ?? "of this node") {
            if error.code == .damaged, let home {
                self = .damagedStore(home: home, detail: error.message)
            } else {
                self.init(error)
            }
        } else {
            self.init(.internalError, "\(error)")
        }
    }

    public var description: String { ([message] + details + [remedy].compactMap { $0 }).joined(separator: " ") }
}
