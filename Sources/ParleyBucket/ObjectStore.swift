/// One object as a listing reports it.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64

    public init(key: String, size: Int64) {
        self.key = key
        self.size = size
    }
}

/// One page of a listing, in key order (UTF-8 bytes, as S3 sorts).
public struct ListPage: Sendable {
    public var objects: [ObjectInfo]
    /// With a delimiter: the "folders" directly under the prefix, each ending in the delimiter.
    public var commonPrefixes: [String]
    /// Pass back to get the next page; `nil` on the last page.
    public var continuation: String?

    public init(objects: [ObjectInfo], commonPrefixes: [String] = [], continuation: String? = nil) {
        self.objects = objects
        self.commonPrefixes = commonPrefixes
        self.continuation = continuation
    }
}

/// What a create-only write found.
public enum PutOutcome: Sendable, Equatable {
    /// The object did not exist and now holds the bytes.
    case created
    /// An object with exactly these bytes was already there (our own earlier write, whose answer was lost).
    case alreadyIdentical
    /// Another object already has this key; nothing was written. Choose another name.
    case conflict
}

/// Retention for write-once buckets (S3 Object Lock).
public struct Retention: Sendable, Equatable {
    public enum Mode: String, Sendable {
        case governance = "GOVERNANCE"
        case compliance = "COMPLIANCE"
    }
    public var mode: Mode
    /// Retention length, in days from the write.
    public var days: Int

    public init(mode: Mode, days: Int) {
        self.mode = mode
        self.days = days
    }
}

/// A store of immutable objects: an S3-compatible bucket or a folder.
///
/// Every write is create-only, so no client can replace what another wrote; readers trust nothing they read
/// (events carry their own signatures).
public protocol ObjectStore: Sendable {
    /// A description for messages: the bucket URL, without credentials.
    var location: String { get }

    /// Writes `bytes` under `key` unless an object is already there.
    func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome

    /// Reads the object at `key`.
    /// - Throws: ``BucketError`` `.notFound`, or `.tooLarge` when it holds more than `maxBytes` (read no further).
    func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8]

    /// Lists keys under `prefix` that sort after `startAfter`, at most `maxKeys` per page.
    func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError)
        -> ListPage

    /// The object's size, or `nil` when there is none.
    func head(key: String) async throws(BucketError) -> ObjectInfo?

    /// Deletes the object at `key`; none there is no error. Only a redacted file's blocks are ever deleted: the log
    /// files stay, create-only. A bucket whose objects are locked (``Retention``) refuses.
    func delete(key: String) async throws(BucketError)

    /// Makes the local file at `file` the object `key` without copying it (a folder bucket on the same file system
    /// links it), unless an object is already there; `nil` when this store cannot, and the caller writes the bytes.
    /// Only for files that never change and are synced to disk already (a node's blocks).
    func linkIfAbsent(key: String, file: String) async throws(BucketError) -> PutOutcome?

    /// Notices that objects under `prefix` (a folder's: empty or ending in `/`) may have changed, so a reader can
    /// list them at once rather than at its next poll; `nil` where the store cannot tell (S3, the default), and the
    /// reader only polls.
    ///
    /// One notice comes as soon as watching has begun (objects may have arrived before); a notice may find nothing
    /// new; a burst of changes comes as one notice. The stream finishes when the store stops watching (the reader
    /// then only polls), and watching stops when its consumer does.
    func changes(under prefix: String) -> AsyncStream<Void>?
}

extension ObjectStore {
    public func changes(under prefix: String) -> AsyncStream<Void>? { nil }
    public func linkIfAbsent(key: String, file: String) async throws(BucketError) -> PutOutcome? { nil }
}

extension ObjectStore {
    /// Every key under `prefix` after `startAfter`, following continuations.
    public func listAll(prefix: String, startAfter: String? = nil, pageSize: Int = 1000) async throws(BucketError) -> [ObjectInfo] {
        var objects: [ObjectInfo] = []
        var continuation: String?
        repeat {
            let page = try await list(prefix: prefix, startAfter: startAfter, delimiter: nil, continuation: continuation, maxKeys: pageSize)
            objects += page.objects
            continuation = page.continuation
        } while continuation != nil
        return objects
    }

    /// The "folders" directly under `prefix` (each ending in `/`).
    public func listFolders(prefix: String) async throws(BucketError) -> [String] {
        var folders: [String] = []
        var continuation: String?
        repeat {
            let page = try await list(prefix: prefix, startAfter: nil, delimiter: "/", continuation: continuation, maxKeys: 1000)
            folders += page.commonPrefixes
            continuation = page.continuation
        } while continuation != nil
        return folders
    }
}

/// An object-store failure, classified so callers know whether to retry and users know what to fix.
public struct BucketError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case notFound
        case tooLarge
        case invalidKey
        case badCredentials
        case accessDenied
        case noSuchBucket
        case clockSkew
        /// Worth retrying: a 5xx, SlowDown, a timeout, a reset connection, a short body.
        case transient
        /// No connection could be made: refused, a name that does not resolve, no route, no answer to connect.
        /// Not passing trouble as a 503 is (the endpoint is usually wrong or down), so requests give up on it
        /// quickly; a later sync may still try again.
        case unreachable
        case io
        case badResponse
        case invalidURL
        /// The store answered, but what it holds is not what the protocol says it must be: a replaced or damaged
        /// metadata.json, a founding event the node refuses.
        case invalidContent
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Whether the same request may succeed later: a transient failure or an unreachable store.
    public var isTemporary: Bool { kind == .transient || kind == .unreachable }
}

extension BucketError.Kind {
    /// The kind's name in JSON output: `access_denied`, `unreachable`.
    public var name: String {
        switch self {
        case .notFound: "not_found"
        case .tooLarge: "too_large"
        case .invalidKey: "invalid_key"
        case .badCredentials: "bad_credentials"
        case .accessDenied: "access_denied"
        case .noSuchBucket: "no_such_bucket"
        case .clockSkew: "clock_skew"
        case .transient: "transient"
        case .unreachable: "unreachable"
        case .io: "io"
        case .badResponse: "bad_response"
        case .invalidURL: "invalid_url"
        case .invalidContent: "invalid_content"
        }
    }
}
