import Foundation

/// Wraps a store and counts its requests by kind: for benchmarks ("requests per 1,000 events") and for tests
/// that listing does not grow with history.
public final class CountingStore: ObjectStore, @unchecked Sendable {
    public let base: any ObjectStore
    private let lock = NSLock()
    private var counts: [String: Int] = [:]

    public init(_ base: any ObjectStore) { self.base = base }

    public var location: String { base.location }

    /// Requests so far: `put`, `get`, `list` (pages), `head`.
    public var snapshot: [String: Int] { lock.withLock { counts } }

    public func reset() { lock.withLock { counts = [:] } }

    func count(_ kind: String) { lock.withLock { counts[kind, default: 0] += 1 } }

    public func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        count("put")
        return try await base.putIfAbsent(key: key, bytes: bytes, retention: retention)
    }

    public func linkIfAbsent(key: String, file: String) async throws(BucketError) -> PutOutcome? {
        count("link")
        return try await base.linkIfAbsent(key: key, file: file)
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        count("get")
        return try await base.get(key: key, maxBytes: maxBytes)
    }

    public func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError)
        -> ListPage
    {
        count("list")
        return try await base.list(prefix: prefix, startAfter: startAfter, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        count("head")
        return try await base.head(key: key)
    }

    public func delete(key: String) async throws(BucketError) {
        count("delete")
        try await base.delete(key: key)
    }

    /// The base store's notices, which are no requests.
    public func changes(under prefix: String) -> AsyncStream<Void>? { base.changes(under: prefix) }
}
