import ParleyBucket

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

    /// A bucket's failure.
    public init(_ error: BucketError) {
        self.init(.bucket, error.message)
        bucketFailure = error.kind
    }

    public var description: String { ([message] + details + [remedy].compactMap { $0 }).joined(separator: " ") }
}
