import Foundation
import ParleyTesting
import Testing

@testable import ParleyBucket

/// A folder bucket's change notices (inotify): what they are told of, and that they keep the folder store's rules.
@Suite struct FolderStoreWatchingTests {
    let directory = TemporaryDirectory()
    var bucket: String { directory.file("bucket") }
    let logFile = "messages_1767225600000_1767225600000_alice.0123456789ab.jsonl"

    init() throws {
        try FileManager.default.createDirectory(atPath: directory.file("bucket/rooms/r"), withIntermediateDirectories: true)
    }

    /// Whether a notice comes (true) or the stream finishes (false), or `nil` when neither happened within 20 s (a
    /// deadline for a broken watcher, not a timing of the notice).
    func notice(from changes: AsyncStream<Void>) async -> Bool? {
        await withTaskGroup(of: Bool?.self) { group in
            group.addTask {
                var iterator = changes.makeAsyncIterator()
                return await iterator.next() != nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(20))
                return nil
            }
            defer { group.cancelAll() }
            return await group.next()!
        }
    }

    /// Waits until the watch holds `key`, or 20 s have passed.
    func waitUntilWatched(_ watch: FolderWatch, _ key: String) async throws -> Set<String> {
        let deadline = ContinuousClock.now + .seconds(20)
        var watched = await watch.watchedKeys()
        while !watched.contains(key) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            watched = await watch.watchedKeys()
        }
        return watched
    }

    @Test func `a file written in a date folder that did not exist when watching began is told of`() async throws {
        let store = FolderStore(root: bucket)
        let changes = try #require(store.changes(under: "rooms/r/"))
        // The first notice says watching has begun. Neither logs/ nor the date folder exists yet, and folders with no
        // file in them are no notice, so the next one is the file's.
        #expect(await notice(from: changes) == true)
        #expect(try await store.putIfAbsent(key: "rooms/r/logs/2026-01-01/\(logFile)", bytes: Array("{}\n".utf8), retention: nil) == .created)
        #expect(await notice(from: changes) == true)
    }

    @Test func `a file renamed into a date folder made while watching is told of`() async throws {
        let store = FolderStore(root: bucket)
        try FileManager.default.createDirectory(atPath: "\(bucket)/rooms/r/logs", withIntermediateDirectories: false)
        let changes = try #require(store.changes(under: "rooms/r/"))
        #expect(await notice(from: changes) == true)
        try FileManager.default.createDirectory(atPath: "\(bucket)/rooms/r/logs/2026-01-02", withIntermediateDirectories: false)
        // Written elsewhere on the same disk, as a syncing tool does, then moved in whole.
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: directory.file("incoming")))
        try #require(rename(directory.file("incoming"), "\(bucket)/rooms/r/logs/2026-01-02/\(logFile)") == 0)
        #expect(await notice(from: changes) == true)
    }

    @Test func `the watch waits for a room folder that does not exist yet, and is told of the first file in it`() async throws {
        let store = FolderStore(root: bucket)
        let changes = try #require(store.changes(under: "rooms/later/"))
        #expect(await notice(from: changes) == true)
        #expect(try await store.putIfAbsent(key: "rooms/later/logs/2026-01-01/\(logFile)", bytes: Array("{}\n".utf8), retention: nil) == .created)
        #expect(await notice(from: changes) == true)
    }

    @Test func `symbolic links planted as a date folder or as the room folder are not followed`() async throws {
        let outside = directory.file("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: "\(bucket)/rooms/r/logs", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: "\(bucket)/rooms/r/logs/2026-01-03", withDestinationPath: outside)
        try FileManager.default.createSymbolicLink(atPath: "\(bucket)/rooms/s", withDestinationPath: "\(bucket)/rooms/r")
        let store = FolderStore(root: bucket)
        let room = try #require(FolderWatch(store: store, prefix: "rooms/r/"))
        let linkedRoom = try #require(FolderWatch(store: store, prefix: "rooms/s/"))
        #expect(await notice(from: room.notices) == true)
        #expect(await notice(from: linkedRoom.notices) == true)
        // One more planted while watching; then a real folder, watched once what came before it was handled.
        try FileManager.default.createSymbolicLink(atPath: "\(bucket)/rooms/r/logs/2026-01-04", withDestinationPath: outside)
        try FileManager.default.createDirectory(atPath: "\(bucket)/rooms/r/logs/2026-01-05", withIntermediateDirectories: false)
        let watched = try await waitUntilWatched(room, "rooms/r/logs/2026-01-05/")
        #expect(watched == ["", "rooms/", "rooms/r/", "rooms/r/logs/", "rooms/r/logs/2026-01-05/"])
        // The link to the room folder is a folder of the path that is not there: only its parents are watched.
        #expect(await linkedRoom.watchedKeys() == ["", "rooms/"])
    }

    @Test func `a room with more folders than the watch may hold is no longer watched`() async throws {
        for day in 1...6 {
            try FileManager.default.createDirectory(atPath: "\(bucket)/rooms/r/folder-\(day)", withIntermediateDirectories: false)
        }
        let watch = try #require(FolderWatch(store: FolderStore(root: bucket), prefix: "rooms/r/", limit: 5))
        #expect(await notice(from: watch.notices) == false)
    }

    @Test func `only a folder's prefix can be watched`() {
        #expect(FolderStore(root: bucket).changes(under: "rooms/r") == nil)
        #expect(FolderStore(root: bucket).changes(under: "rooms/../") == nil)
    }
}
