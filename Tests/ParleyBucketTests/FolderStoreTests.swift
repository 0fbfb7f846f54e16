import Foundation
import ParleyBucket
import ParleyTesting
import Testing

@Suite struct FolderStoreTests {
    @Test("A create-only write never replaces an object, and a repeated identical write succeeds")
    func createOnly() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path)
        let key = "rooms/team/logs/2024-09-14/messages_1_2_a.jsonl"
        #expect(try await store.putIfAbsent(key: key, bytes: Array("one\n".utf8), retention: nil) == .created)
        #expect(try await store.putIfAbsent(key: key, bytes: Array("one\n".utf8), retention: nil) == .alreadyIdentical)
        #expect(try await store.putIfAbsent(key: key, bytes: Array("two\n".utf8), retention: nil) == .conflict)
        #expect(try await store.get(key: key, maxBytes: 100) == Array("one\n".utf8))
        #expect(try await store.head(key: key) == ObjectInfo(key: key, size: 4))
        #expect(try await store.head(key: "rooms/team/none") == nil)
        // No temporary file is left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.file("rooms/team/logs/2024-09-14"))
        #expect(names == ["messages_1_2_a.jsonl"])
    }

    @Test("A read stops at the size limit")
    func readLimit() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path)
        _ = try await store.putIfAbsent(key: "big", bytes: [UInt8](repeating: 1, count: 1000), retention: nil)
        #expect(try await store.get(key: "big", maxBytes: 1000).count == 1000)
        do {
            _ = try await store.get(key: "big", maxBytes: 999)
            Issue.record("read past the limit")
        } catch {
            #expect(error.kind == .tooLarge)
        }
        do {
            _ = try await store.get(key: "missing", maxBytes: 10)
            Issue.record("read a missing object")
        } catch {
            #expect(error.kind == .notFound)
        }
    }

    @Test("Listing is in key order, pages with continuations, starts after a key and groups folders")
    func listing() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path)
        var keys: [String] = []
        for day in ["2024-09-14", "2024-09-15"] {
            for start in [100, 20, 3] {
                keys.append("rooms/r/logs/\(day)/messages_\(String(repeating: "0", count: 10))\(start)_1_a.jsonl")
            }
        }
        keys.append("rooms/r/logs/2024-09-14.txt")
        keys.append("rooms/r/metadata.json")
        for key in keys.shuffled() { _ = try await store.putIfAbsent(key: key, bytes: Array(key.utf8), retention: nil) }
        let expected = keys.filter { $0.hasPrefix("rooms/r/logs/") }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }

        #expect(try await store.listAll(prefix: "rooms/r/logs/", pageSize: 2).map(\.key) == expected)
        let after = expected[2]
        #expect(try await store.listAll(prefix: "rooms/r/logs/", startAfter: after, pageSize: 1000).map(\.key) == Array(expected[3...]))
        #expect(try await store.listAll(prefix: "rooms/r/logs/2024-09-15/").count == 3)
        #expect(try await store.listAll(prefix: "rooms/r/logs/2024-09-1").count == 7)
        #expect(try await store.listFolders(prefix: "rooms/r/logs/") == ["rooms/r/logs/2024-09-14/", "rooms/r/logs/2024-09-15/"])
        #expect(try await store.listFolders(prefix: "rooms/") == ["rooms/r/"])
        #expect(try await store.listAll(prefix: "rooms/none/").isEmpty)
    }

    @Test("Keys with .., backslashes, %, or NUL are refused before any path is built")
    func hostileKeys() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path + "/bucket")
        for key in ["../escape", "rooms/../../escape", "a\\..\\b", "a%2f..%2fb", "a\u{0}b"] {
            do {
                _ = try await store.putIfAbsent(key: key, bytes: [1], retention: nil)
                Issue.record("wrote \(key)")
            } catch {
                #expect(error.kind == .invalidKey)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: folder.file("escape")))
    }

    @Test("Concurrent writers of one key: exactly one creates it")
    func concurrentWriters() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path)
        let outcomes = try await withThrowingTaskGroup(of: PutOutcome.self) { group in
            for writer in 0..<8 {
                group.addTask { try await store.putIfAbsent(key: "rooms/r/same", bytes: Array("writer \(writer)".utf8), retention: nil) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .created }.count == 1)
        #expect(outcomes.filter { $0 == .conflict }.count == 7)
    }
}
