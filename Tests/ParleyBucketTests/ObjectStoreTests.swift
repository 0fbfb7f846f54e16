import Foundation
import ParleyBucket
import ParleyTesting
import Testing

/// The object stores under test: every behaviour is checked on a folder and on a real S3 server (moto).
enum Backend: String, CustomStringConvertible, Sendable {
    case folder, s3
    var description: String { rawValue }

    static var all: [Backend] { S3TestServer.isAvailable ? [.folder, .s3] : [.folder] }

    /// A fresh, empty store; `keep` holds what must live as long as it.
    func make() throws -> (store: any ObjectStore, keep: AnyObject?) {
        switch self {
        case .folder:
            let folder = TemporaryDirectory()
            try FileManager.default.createDirectory(atPath: folder.file("bucket"), withIntermediateDirectories: false)
            return (FolderStore(root: folder.file("bucket")), folder)
        case .s3:
            return (try S3TestServer.store(), nil)
        }
    }
}

@Suite struct ObjectStoreTests {
    @Test("A create-only write never replaces an object, and a repeated identical write succeeds", arguments: Backend.all)
    func createOnly(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        let key = "rooms/team/logs/2024-09-14/messages_1_2_a.jsonl"
        #expect(try await store.putIfAbsent(key: key, bytes: Array("one\n".utf8), retention: nil) == .created)
        #expect(try await store.putIfAbsent(key: key, bytes: Array("one\n".utf8), retention: nil) == .alreadyIdentical)
        #expect(try await store.putIfAbsent(key: key, bytes: Array("two\n".utf8), retention: nil) == .conflict)
        #expect(try await store.get(key: key, maxBytes: 100) == Array("one\n".utf8))
        #expect(try await store.head(key: key) == ObjectInfo(key: key, size: 4))
        #expect(try await store.head(key: "rooms/team/none") == nil)
        #expect(try await store.listAll(prefix: "rooms/").map(\.key) == [key])
        withExtendedLifetime(keep) {}
    }

    @Test("A read stops at the size limit, and a missing object is reported as such", arguments: Backend.all)
    func readLimit(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        _ = try await store.putIfAbsent(key: "big", bytes: [UInt8](repeating: 1, count: 1000), retention: nil)
        #expect(try await store.get(key: "big", maxBytes: 1000).count == 1000)
        await #expect(throws: BucketError.Kind.tooLarge) { try await kind { try await store.get(key: "big", maxBytes: 999) } }
        await #expect(throws: BucketError.Kind.notFound) { try await kind { try await store.get(key: "missing", maxBytes: 10) } }
        withExtendedLifetime(keep) {}
    }

    @Test("Listing is in key order, pages with continuations, starts after a key and groups folders", arguments: Backend.all)
    func listing(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        var keys: [String] = []
        for day in ["2024-09-14", "2024-09-15"] {
            for start in [100, 20, 3] { keys.append("rooms/r/logs/\(day)/messages_\(String(repeating: "0", count: 10))\(start)_1_a.jsonl") }
        }
        keys += ["rooms/r/logs/2024-09-14.txt", "rooms/r/metadata.json"]
        for key in keys.shuffled() { _ = try await store.putIfAbsent(key: key, bytes: Array(key.utf8), retention: nil) }
        let expected = keys.filter { $0.hasPrefix("rooms/r/logs/") }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }

        #expect(try await store.listAll(prefix: "rooms/r/logs/", pageSize: 2).map(\.key) == expected)
        #expect(try await store.listAll(prefix: "rooms/r/logs/", startAfter: expected[2]).map(\.key) == Array(expected[3...]))
        #expect(try await store.listAll(prefix: "rooms/r/logs/2024-09-15/").count == 3)
        #expect(try await store.listAll(prefix: "rooms/r/logs/2024-09-1").count == 7)
        #expect(try await store.listFolders(prefix: "rooms/r/logs/") == ["rooms/r/logs/2024-09-14/", "rooms/r/logs/2024-09-15/"])
        #expect(try await store.listFolders(prefix: "rooms/") == ["rooms/r/"])
        #expect(try await store.listAll(prefix: "rooms/none/").isEmpty)
        withExtendedLifetime(keep) {}
    }

    @Test("Pages of 1,000: keys added during a listing after its cursor are seen, none twice", arguments: Backend.all)
    func listingWhileKeysAreAdded(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        let keys = (0..<2100).map { "logs/k\(String(format: "%05d", $0 * 2))" }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: keys.count, by: 300) {
                group.addTask {
                    for key in keys[chunk..<min(keys.count, chunk + 300)] { _ = try await store.putIfAbsent(key: key, bytes: [1], retention: nil) }
                }
            }
            try await group.waitForAll()
        }
        let first = try await store.list(prefix: "logs/", startAfter: nil, delimiter: nil, continuation: nil, maxKeys: 1000)
        #expect(first.objects.count == 1000)
        let cursor = try #require(first.continuation)
        // One key before the cursor (this listing has passed it) and one after it.
        _ = try await store.putIfAbsent(key: "logs/k00001", bytes: [1], retention: nil)
        _ = try await store.putIfAbsent(key: "logs/k03001", bytes: [1], retention: nil)
        var seen = first.objects.map(\.key)
        var continuation: String? = cursor
        while let token = continuation {
            let page = try await store.list(prefix: "logs/", startAfter: nil, delimiter: nil, continuation: token, maxKeys: 1000)
            seen += page.objects.map(\.key)
            continuation = page.continuation
        }
        #expect(Set(seen).count == seen.count)
        #expect(Set(keys).isSubset(of: Set(seen)))
        #expect(seen.contains("logs/k03001"))
        #expect(!seen.contains("logs/k00001"))
        withExtendedLifetime(keep) {}
    }

    @Test("Keys with .., backslashes, %, or NUL are refused before any path or request is built", arguments: Backend.all)
    func hostileKeys(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        for key in ["../escape", "rooms/../../escape", "a\\..\\b", "a%2f..%2fb", "a\u{0}b", "/abs", "a//b"] {
            await #expect(throws: BucketError.Kind.invalidKey, "\(key)") {
                try await kind { try await store.putIfAbsent(key: key, bytes: [1], retention: nil) }
            }
            await #expect(throws: BucketError.Kind.invalidKey, "\(key)") { try await kind { try await store.get(key: key, maxBytes: 1) } }
        }
        #expect(try await store.listAll(prefix: "").isEmpty)
        withExtendedLifetime(keep) {}
    }

    @Test("Concurrent writers of one key: exactly one creates it", arguments: Backend.all)
    func concurrentWriters(backend: Backend) async throws {
        let (store, keep) = try backend.make()
        let outcomes = try await withThrowingTaskGroup(of: PutOutcome.self) { group in
            for writer in 0..<8 {
                group.addTask { try await store.putIfAbsent(key: "rooms/r/same", bytes: Array("writer \(writer)".utf8), retention: nil) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .created }.count == 1)
        #expect(outcomes.filter { $0 == .conflict }.count == 7)
        withExtendedLifetime(keep) {}
    }

    @Test("A folder write leaves no temporary file behind")
    func noTemporaryFiles() async throws {
        let folder = TemporaryDirectory()
        let store = FolderStore(root: folder.path)
        _ = try await store.putIfAbsent(key: "rooms/r/a", bytes: [1], retention: nil)
        _ = try await store.putIfAbsent(key: "rooms/r/a", bytes: [2], retention: nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.file("rooms/r")) == ["a"])
    }
}

@Suite struct FolderStoreTests {
    /// A bucket folder holding one real log file and, beside it, links of every kind an attacker with write access
    /// (or a careless sync tool) could leave: to `/`, to the folder itself, to a file outside, and a folder that is a
    /// link to a folder outside.
    struct LinkedBucket {
        let directory = TemporaryDirectory()
        var root: String { directory.file("bucket") }
        var outside: String { directory.file("outside") }
        let realKey = "rooms/r/logs/2024-09-14/messages_1_2_a.jsonl"

        init() throws {
            let files = FileManager.default
            try files.createDirectory(atPath: directory.file("bucket/rooms/r/logs/2024-09-14"), withIntermediateDirectories: true)
            try files.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try Data("real\n".utf8).write(to: URL(fileURLWithPath: "\(root)/\(realKey)"))
            try Data("secret\n".utf8).write(to: URL(fileURLWithPath: "\(outside)/secret.txt"))
            let logs = "\(root)/rooms/r/logs"
            try files.createSymbolicLink(atPath: "\(logs)/everything", withDestinationPath: "/")
            try files.createSymbolicLink(atPath: "\(logs)/again", withDestinationPath: ".")
            try files.createSymbolicLink(atPath: "\(logs)/2024-09-14/messages_3_4_a.jsonl", withDestinationPath: "\(outside)/secret.txt")
            try files.createSymbolicLink(atPath: "\(root)/rooms/elsewhere", withDestinationPath: outside)
            #expect(mkfifo("\(logs)/2024-09-14/messages_5_6_a.jsonl", 0o644) == 0)
        }

        var store: FolderStore { FolderStore(root: root) }
    }

    @Test func `a folder store lists only regular files and folders, never following a link`() async throws {
        let bucket = try LinkedBucket()
        #expect(try await bucket.store.listAll(prefix: "").map(\.key) == [bucket.realKey])
        #expect(try await bucket.store.listAll(prefix: "rooms/r/logs/").map(\.key) == [bucket.realKey])
        #expect(try await bucket.store.listFolders(prefix: "rooms/") == ["rooms/r/"])
        #expect(try await bucket.store.listFolders(prefix: "rooms/r/logs/") == ["rooms/r/logs/2024-09-14/"])
    }

    @Test func `a folder store reads no object through a link, in its name or in a folder above it, and never waits on a FIFO`() async throws {
        let bucket = try LinkedBucket()
        for key in [
            "rooms/r/logs/2024-09-14/messages_3_4_a.jsonl", "rooms/elsewhere/secret.txt", "rooms/r/logs/again/2024-09-14/messages_1_2_a.jsonl",
            "rooms/r/logs/everything/etc/hostname", "rooms/r/logs/2024-09-14/messages_5_6_a.jsonl",
        ] {
            await #expect(throws: BucketError.Kind.notFound, "\(key)") { try await kind { try await bucket.store.get(key: key, maxBytes: 1 << 20) } }
            #expect(try await bucket.store.head(key: key) == nil, "\(key)")
        }
        #expect(try await bucket.store.get(key: bucket.realKey, maxBytes: 100) == Array("real\n".utf8))
    }

    @Test func `a folder store writes nothing through a link`() async throws {
        let bucket = try LinkedBucket()
        await #expect(throws: BucketError.self) {
            try await bucket.store.putIfAbsent(key: "rooms/elsewhere/planted.txt", bytes: [1], retention: nil)
        }
        await #expect(throws: BucketError.self) {
            try await bucket.store.putIfAbsent(key: "rooms/r/logs/again/new.jsonl", bytes: [1], retention: nil)
        }
        // A name taken by a link is taken: the link is neither followed nor replaced.
        #expect(try await bucket.store.putIfAbsent(key: "rooms/r/logs/2024-09-14/messages_3_4_a.jsonl", bytes: [1], retention: nil) == .conflict)
        #expect(try FileManager.default.contentsOfDirectory(atPath: bucket.outside) == ["secret.txt"])
        #expect(try String(contentsOfFile: "\(bucket.outside)/secret.txt", encoding: .utf8) == "secret\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(bucket.root)/rooms/r/logs").sorted() == ["2024-09-14", "again", "everything"])
    }

    @Test func `a folder bucket that does not exist is an error naming its path, and nothing is created`() async throws {
        let directory = TemporaryDirectory()
        let missing = directory.file("no/such/bucket")
        let store = FolderStore(root: missing)
        let attempts: [(String, () async throws -> Void)] = [
            ("list", { _ = try await store.listAll(prefix: "rooms/") }),
            ("list folders", { _ = try await store.listFolders(prefix: "rooms/") }),
            ("get", { _ = try await store.get(key: "rooms/r/metadata.json", maxBytes: 10) }),
            ("head", { _ = try await store.head(key: "rooms/r/metadata.json") }),
            ("put", { _ = try await store.putIfAbsent(key: "rooms/r/metadata.json", bytes: [1], retention: nil) }),
        ]
        for (name, attempt) in attempts {
            do {
                try await attempt()
                Issue.record("\(name) succeeded on a missing bucket folder")
            } catch let error as BucketError {
                #expect(error.kind == .noSuchBucket, "\(name): \(error)")
                #expect(error.message.contains(missing) && error.message.contains("does not exist"), "\(name): \(error)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: directory.file("no")))
    }

    @Test func `creating a folder bucket makes its last folder only, unless asked for the whole path`() throws {
        let directory = TemporaryDirectory()
        try FolderStore(root: directory.file("new")).createRoot(intermediateFolders: false)
        #expect(FileManager.default.fileExists(atPath: directory.file("new")))
        try FolderStore(root: directory.file("new")).createRoot(intermediateFolders: false)
        #expect(throws: BucketError.self) { try FolderStore(root: directory.file("a/b/c")).createRoot(intermediateFolders: false) }
        #expect(!FileManager.default.fileExists(atPath: directory.file("a")))
        try FolderStore(root: directory.file("a/b/c")).createRoot(intermediateFolders: true)
        #expect(FileManager.default.fileExists(atPath: directory.file("a/b/c")))
    }
}

/// Runs `body` and rethrows a ``BucketError`` as its kind, so tests can expect a kind whatever the message.
func kind<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let error as BucketError { throw error.kind }
}

extension BucketError.Kind: Error {}
