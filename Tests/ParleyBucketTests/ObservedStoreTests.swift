import Foundation
import ParleyBucket
import ParleyTesting
import Synchronization
import Testing

@Suite struct ObservedStoreTests {
    final class Requests: Sendable {
        let seen = Mutex<[ObservedRequest]>([])
    }

    @Test func `every request is told with its key and size, and an offline store fails as an unreachable bucket until it is back`() async throws {
        let directory = TemporaryDirectory()
        let requests = Requests()
        let store = ObservedStore(FolderStore(root: directory.path)) { request in requests.seen.withLock { $0.append(request) } }
        #expect(try await store.putIfAbsent(key: "a/b.jsonl", bytes: Array("hello".utf8), retention: nil) == .created)
        #expect(try await store.get(key: "a/b.jsonl", maxBytes: 100) == Array("hello".utf8))
        #expect(try await store.list(prefix: "a/", startAfter: nil, delimiter: nil, continuation: nil, maxKeys: 10).objects.count == 1)
        store.setOnline(false)
        #expect(!store.isOnline)
        await #expect(throws: BucketError.self) { try await store.get(key: "a/b.jsonl", maxBytes: 100) }
        do {
            _ = try await store.putIfAbsent(key: "a/c.jsonl", bytes: [1], retention: nil)
            Issue.record("an offline store took a write")
        } catch {
            #expect(error.kind == .unreachable)
        }
        store.setOnline(true)
        #expect(try await store.head(key: "a/c.jsonl") == nil, "nothing was written while offline")
        let seen = requests.seen.withLock { $0 }
        #expect(seen.map(\.kind) == [.put, .get, .list, .get, .put, .head])
        #expect(seen.map(\.size) == [5, 5, 1, 0, 0, 0])
        #expect(seen.map(\.failure) == [nil, nil, nil, "offline", "offline", nil])
        #expect(seen[0].key == "a/b.jsonl" && seen[2].key == "a/")
    }

    @Test func `coming back online tells the readers watching for changes`() async throws {
        let directory = TemporaryDirectory()
        let store = ObservedStore(FolderStore(root: directory.path)) { _ in }
        let changes = try #require(store.changes(under: ""))
        var notices = changes.makeAsyncIterator()
        // The first notice comes when watching begins.
        #expect(await notices.next() != nil)
        store.setOnline(false)
        store.setOnline(true)
        #expect(await notices.next() != nil)
    }
}
