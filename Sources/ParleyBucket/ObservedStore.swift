import Foundation
import Synchronization

/// One request a store answered or refused, as an ``ObservedStore`` reports it.
public struct ObservedRequest: Sendable {
    public enum Kind: String, Sendable {
        case put, get, list, head, delete
    }

    public var kind: Kind
    /// The key, or the prefix listed.
    public var key: String
    /// Bytes written or read; keys listed for a list.
    public var size: Int
    /// How long the request took.
    public var seconds: Double
    /// Why it failed, when it did.
    public var failure: String?
}

/// Wraps a store, tells `observer` of every request, and can be taken offline: while offline every request fails as an
/// unreachable bucket does, and coming back online sends a change notice, which a reader that is not backing off after failures acts on at once. What
/// `parley web --demo` shows of the traffic between its two nodes, and how it cuts one off.
public final class ObservedStore: ObjectStore, Sendable {
    public let base: any ObjectStore
    let observer: @Sendable (ObservedRequest) -> Void
    private let online = Atomic<Bool>(true)
    private let watchers = Mutex<[UInt64: AsyncStream<Void>.Continuation]>([:])
    private let nextWatcher = Atomic<UInt64>(0)

    public init(_ base: any ObjectStore, observer: @escaping @Sendable (ObservedRequest) -> Void) {
        self.base = base
        self.observer = observer
    }

    public var location: String { base.location }

    /// Whether requests reach the base store.
    public var isOnline: Bool { online.load(ordering: .relaxed) }

    /// Takes the store offline or back online; back online, every reader watching for changes gets a notice.
    public func setOnline(_ isOnline: Bool) {
        let was = online.exchange(isOnline, ordering: .relaxed)
        guard isOnline, !was else { return }
        for watcher in watchers.withLock({ Array($0.values) }) { watcher.yield() }
    }

    /// Runs `request`, which answers its value and its size, and tells the observer.
    func observe<T>(_ kind: ObservedRequest.Kind, _ key: String, _ request: () async throws(BucketError) -> (T, size: Int)) async throws(BucketError) -> T {
        let start = ContinuousClock.now
        func report(_ size: Int, _ failure: String?) {
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            observer(ObservedRequest(kind: kind, key: key, size: size, seconds: seconds, failure: failure))
        }
        guard isOnline else {
            report(0, "offline")
            throw BucketError(.unreachable, "\(base.location) is offline (taken offline on purpose).")
        }
        do {
            let (value, size) = try await request()
            report(size, nil)
            return value
        } catch {
            report(0, error.message)
            throw error
        }
    }

    public func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try await observe(.put, key) { () async throws(BucketError) in
            (try await base.putIfAbsent(key: key, bytes: bytes, retention: retention), bytes.count)
        }
    }

    public func linkIfAbsent(key: String, file: String) async throws(BucketError) -> PutOutcome? {
        // A link moves no bytes; it is still a write the traffic view shows.
        var linked: PutOutcome?
        _ = try await observe(.put, key) { () async throws(BucketError) in
            linked = try await base.linkIfAbsent(key: key, file: file)
            return (linked ?? .created, 0)
        }
        return linked
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try await observe(.get, key) { () async throws(BucketError) in
            let bytes = try await base.get(key: key, maxBytes: maxBytes)
            return (bytes, bytes.count)
        }
    }

    public func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError)
        -> ListPage
    {
        try await observe(.list, prefix) { () async throws(BucketError) in
            let page = try await base.list(prefix: prefix, startAfter: startAfter, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
            return (page, page.objects.count + page.commonPrefixes.count)
        }
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try await observe(.head, key) { () async throws(BucketError) in
            let info = try await base.head(key: key)
            return (info, info.map { Int($0.size) } ?? 0)
        }
    }

    public func delete(key: String) async throws(BucketError) {
        try await observe(.delete, key) { () async throws(BucketError) in
            try await base.delete(key: key)
            return ((), 0)
        }
    }

    /// The base store's notices, and one more each time the store comes back online.
    public func changes(under prefix: String) -> AsyncStream<Void>? {
        guard let notices = base.changes(under: prefix) else { return nil }
        let id = nextWatcher.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        watchers.withLock { $0[id] = continuation }
        let forwarding = Task {
            for await notice in notices { continuation.yield(notice) }
            continuation.finish()
        }
        continuation.onTermination = { [weak self] _ in
            forwarding.cancel()
            _ = self?.watchers.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }
}
