import Foundation
import ParleyCore
import ParleyStore
import ParleySync
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// A clock tests move by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var now: Int64

    init(_ ms: Int64 = 1_790_000_000_000) { now = ms }

    var ms: Int64 {
        get { lock.withLock { now } }
        set { lock.withLock { now = newValue } }
    }

    func advance(_ delta: Int64) { ms += delta }
    var function: @Sendable () -> Int64 { { [self] in ms } }
}

/// Where a test's bucket lives: a folder, or a fresh prefix of the S3 test server.
enum BucketKind: String, CustomStringConvertible, Sendable {
    case folder, s3
    var description: String { rawValue }
    static var all: [BucketKind] { S3TestServer.isAvailable ? [.folder, .s3] : [.folder] }
}

/// Nodes with their own homes and clocks, sharing one bucket.
final class BucketWorld: @unchecked Sendable {
    let directory = TemporaryDirectory()
    let url: BucketURL
    let kind: BucketKind
    var settings = BucketSettings()

    init(_ kind: BucketKind) throws {
        self.kind = kind
        switch kind {
        case .folder: url = try BucketURL("file://\(directory.path)/bucket")
        case .s3: url = try BucketURL(S3TestServer.url(prefix: S3TestServer.freshPrefix()))
        }
    }

    /// A world on moto reached through the fault proxy, at `prefix`.
    init(throughFaultProxy prefix: String) throws {
        kind = .s3
        url = try BucketURL(S3TestServer.url(prefix: prefix, throughProxy: true))
    }

    /// The bucket itself, to plant or inspect objects.
    var objects: any ObjectStore { try! url.open(environment: S3TestServer.awsEnvironment) }

    /// A node of `user` in the folder named `home` (by default the user id).
    func node(_ user: String, home name: String? = nil, clock: TestClock = TestClock()) throws -> Node {
        let home = ParleyHome(path: directory.file(name ?? user))
        _ = try Identity.create(userID: user, home: home)
        return try Node(home: home, clock: clock.function)
    }

    func client(_ node: Node, counting: CountingStore? = nil) -> BucketClient {
        BucketClient(node: node, settings: settings) { url throws(BucketError) in
            if let counting { return counting }
            return try url.open(environment: S3TestServer.awsEnvironment)
        }
    }

    /// Every log file in the room, by key.
    func logFiles(_ roomID: String) async throws -> [String] {
        try await objects.listAll(prefix: BucketLayout.logsPrefix(roomID)).map(\.key)
    }
}

@Suite struct BucketRoomTests {
    /// Alice creates `team` in the bucket, invites Bob, and Bob joins with the invite code.
    func twoMembers(_ world: BucketWorld, aliceClock: TestClock = TestClock(), bobClock: TestClock = TestClock()) async throws
        -> (alice: BucketClient, bob: BucketClient)
    {
        let alice = world.client(try world.node("alice", clock: aliceClock))
        let bob = world.client(try world.node("bob", clock: bobClock))
        _ = try await alice.createRoom("team", bucket: world.url, name: "Team")
        try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        let code = try #require(try alice.inviteCode("team"))
        _ = try await bob.join(InviteCode(parsing: code.text))
        _ = try await alice.sync("team")
        return (alice, bob)
    }

    @Test("Two nodes chat through a bucket and end with the same timeline", arguments: BucketKind.all)
    func twoNodesChat(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let (alice, bob) = try await twoMembers(world)
        let hello = try bob.node.send("team", text: "hello alice")
        let pending = try bob.node.store.outboxStatus(roomID: "team", senderKey: bob.node.identity.signingKeyBase64)
        #expect(pending.pending == 1)
        let flushed = try await bob.flush("team")
        #expect(flushed.events == 1 && flushed.files.count == 1)
        #expect(try bob.node.store.outboxStatus(roomID: "team", senderKey: bob.node.identity.signingKeyBase64).pending == 0)

        let received = try await alice.sync("team")
        #expect(received.accepted == [hello.event.eventID])
        #expect(received.problems.isEmpty)
        let reply = try alice.node.send("team", text: "hi bob", replyTo: hello.event.eventID)
        _ = try await alice.flush("team")
        #expect(try await bob.sync("team").accepted == [reply.event.eventID])

        let aliceLog = try alice.node.timeline("team", limit: 100).map(\.eventID)
        let bobLog = try bob.node.timeline("team", limit: 100).map(\.eventID)
        #expect(aliceLog == bobLog)
        #expect(try bob.node.roomState("team").name == "Team")
        // A second sync finds nothing new and reads nothing.
        let again = try await alice.sync("team")
        #expect(again.filesRead == 0 && again.accepted.isEmpty)
    }

    @Test("One node follows several rooms in one bucket and a room in another")
    func manyRoomsAndBuckets() async throws {
        let world = try BucketWorld(.folder)
        let other = try BucketURL("file://\(world.directory.path)/other-bucket")
        let alice = world.client(try world.node("alice"))
        let bob = world.client(try world.node("bob"))
        for (room, url) in [("one", world.url), ("two", world.url), ("three", other)] {
            _ = try await alice.createRoom(room, bucket: url)
            try alice.node.invite(room, userID: "bob", key: bob.node.identity.signingKeyBase64)
            _ = try await alice.flush(room)
            _ = try await bob.join(try #require(try alice.inviteCode(room)))
            try bob.node.send(room, text: "hello \(room)")
            _ = try await bob.flush(room)
        }
        for room in ["one", "two", "three"] {
            _ = try await alice.sync(room)
            #expect(try alice.node.timeline(room, limit: 10).contains { $0.body == "hello \(room)" })
        }
        let rooms = try alice.node.store.bucketRooms()
        #expect(rooms.map(\.roomID) == ["one", "three", "two"])
        #expect(rooms.map(\.bucketURL) == [world.url.text, other.text, world.url.text])
    }

    @Test("Gzip-compressed log files are written and read like plain ones", arguments: BucketKind.all)
    func gzipFiles(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        world.settings.gzip = true
        let (alice, bob) = try await twoMembers(world)
        let message = try bob.node.send("team", text: String(repeating: "compressible ", count: 200))
        let written = try await bob.flush("team")
        #expect(written.files.allSatisfy { $0.hasSuffix(".jsonl.gz") })
        let stored = try await world.objects.get(key: written.files[0], maxBytes: 1 << 20)
        #expect(Gzip.isGzip(stored) && stored.count < message.wire.count / 4)
        #expect(try await alice.sync("team").accepted == [message.event.eventID])
    }

    @Test("A sync lists from its cursor: its requests do not grow with the room's history")
    func requestsDoNotGrowWithHistory() async throws {
        let world = try BucketWorld(.folder)
        let (alice, bob) = try await twoMembers(world)
        for index in 0..<30 {
            try bob.node.send("team", text: "message \(index)")
            _ = try await bob.flush("team")
        }
        _ = try await alice.sync("team")
        let counting = CountingStore(world.objects)
        let watcher = world.client(alice.node, counting: counting)
        _ = try await watcher.sync("team")
        #expect(counting.snapshot == ["list": 2])
        try bob.node.send("team", text: "one more")
        let bobCounting = CountingStore(world.objects)
        _ = try await world.client(bob.node, counting: bobCounting).flush("team")
        #expect(bobCounting.snapshot == ["put": 1])
        counting.reset()
        #expect(try await watcher.sync("team").accepted.count == 1)
        #expect(counting.snapshot == ["list": 2, "get": 1])
    }

    @Test("A file uploaded a day late is found through its hint", arguments: BucketKind.all)
    func lateUploadIsFoundByHint(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let aliceClock = TestClock()
        let bobClock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        // Bob writes while offline; a day passes; Alice talks and syncs, moving her cursor past Bob's message.
        let offline = try bob.node.send("team", text: "written offline")
        aliceClock.advance(86_400_000)
        bobClock.advance(86_400_000)
        try alice.node.send("team", text: "anyone there?")
        _ = try await alice.flush("team")
        _ = try await alice.sync("team")
        // Bob comes back online: his file is named for yesterday.
        let flushed = try await bob.flush("team")
        #expect(flushed.files.first?.contains(BucketLayout.utcDate(offline.event.timestampMs)) == true)
        let report = try await alice.sync("team")
        #expect(report.accepted == [offline.event.eventID])
        #expect(!report.listedEverything)
    }

    @Test("Without a hint, a chain gap makes the next sync list everything and find the late file")
    func gapTriggersFullListing() async throws {
        let world = try BucketWorld(.folder)
        world.settings.gapListingEveryMs = 0
        let aliceClock = TestClock()
        let bobClock = TestClock()
        var (alice, bob) = try await twoMembers(world, aliceClock: aliceClock, bobClock: bobClock)
        bob.settings.hintAfterMs = .max
        let offline = try bob.node.send("team", text: "written offline")
        aliceClock.advance(86_400_000)
        bobClock.advance(86_400_000)
        try alice.node.send("team", text: "anyone there?")
        _ = try await alice.flush("team")
        _ = try await alice.sync("team")
        _ = try await bob.flush("team")
        #expect(try await alice.sync("team").accepted.isEmpty)
        // Bob's next message reaches Alice, but its chain has a gap where the late one belongs.
        let next = try bob.node.send("team", text: "back online")
        _ = try await bob.flush("team")
        let gapped = try await alice.sync("team")
        #expect(gapped.heldBack == 1)
        let healed = try await alice.sync("team")
        #expect(healed.listedEverything)
        #expect(healed.accepted == [offline.event.eventID, next.event.eventID])
    }

    @Test("Hostile files are reported with reasons and their good events kept", arguments: BucketKind.all)
    func hostileFiles(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        // On S3 the oversized object is real, so the limit comes down to keep the upload small: the same check on the
        // listed size decides, whatever the limit.
        if kind == .s3 { world.settings.maxObjectBytes = 4 << 20 }
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let objects = world.objects
        let time = clock.ms + 1000
        func plant(_ name: String, _ lines: [[UInt8]], newline: Bool = true) async throws {
            var body = lines.joined(separator: [0x0A]).map { $0 }
            if newline { body.append(0x0A) }
            _ = try await objects.putIfAbsent(key: "\(BucketLayout.logsPrefix("team"))\(name)", bytes: body, retention: nil)
        }
        let day = BucketLayout.utcDate(time)
        var mallory = TestDevice("mallory")
        let good = try bob.node.send("team", text: "good")
        // One flipped bit in the body: "good" becomes "cood", which the content hash no longer matches.
        var flipped = good.wire
        flipped[try #require(flipped.firstRange(of: Array(#""good""#.utf8))).lowerBound + 1] ^= 0x04
        let forged = try forge(good, by: mallory)
        let intruder = mallory.message("team", "let me in", at: time)
        let truncatedSource = try bob.node.send("team", text: "héllo wörld")
        let cut = Array(truncatedSource.wire.prefix(while: { $0 != 0xC3 })) + [0xC3]
        try await plant("\(day)/messages_\(time)_\(time)_mallory.jsonl", [flipped, forged, intruder.wire, good.wire, cut], newline: false)
        try await plant("\(day)/messages_\(time)_\(time)_empty.jsonl", [], newline: false)
        // An empty first line: skipped, but counted, so the forged event is line 2 for the sync and the audit alike.
        try await plant("\(day)/messages_\(time)_\(time)_blank.jsonl", [[], forged])
        try await plant("README.txt", [Array("not a log".utf8)])
        try await plant("\(day)/messages_1_2_..jsonl", [good.wire])
        if kind == .s3 {
            // An object over the limit: skipped on its listed size, never read.
            _ = try await objects.putIfAbsent(
                key: "\(BucketLayout.logsPrefix("team"))\(day)/messages_\(time)_\(time)_huge.jsonl", bytes: [UInt8](repeating: 0x78, count: 5 << 20),
                retention: nil)
        }
        if case .folder(let path) = world.url {
            // A 1 GiB object (sparse, so the test stays cheap): skipped on its listed size, never read.
            let huge = "\(path)/\(BucketLayout.logsPrefix("team"))\(day)/messages_\(time)_\(time)_huge.jsonl"
            try #require(FileManager.default.createFile(atPath: huge, contents: nil))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: huge))
            try handle.truncate(atOffset: 1 << 30)
            try handle.close()
            // Names the store itself refuses to write; a folder synced from elsewhere can still hold them.
            for name in ["messages_1_2_a%2fb.jsonl", "messages_1_2_a\\b.jsonl"] {
                try Data(good.wire + [0x0A]).write(to: URL(fileURLWithPath: "\(path)/\(BucketLayout.logsPrefix("team"))\(day)/\(name)"))
            }
        }
        // A line far over the event size limit, then a good event: the line is refused, the event kept.
        let beyond = try bob.node.send("team", text: "beyond the long line")
        try await plant("\(day)/messages_\(time)_\(time)_long.jsonl", [[UInt8](repeating: 0x78, count: 1 << 20), beyond.wire])
        if kind == .s3, let s3 = objects as? S3Store {
            // Names our store refuses to write, written raw: a folder marker (of a day after the sync cursor, so the
            // listing reaches it), an encoded slash, a backslash.
            for name in ["\(BucketLayout.utcDate(time + 86_400_000))/", "\(day)/messages_1_2_a%2fb.jsonl", "\(day)/messages_1_2_a\\b.jsonl"] {
                let response = try await s3.perform(
                    method: .PUT, key: BucketLayout.logsPrefix("team") + name, body: name.hasSuffix("/") ? [] : good.wire + [0x0A], maxBytes: 1024)
                try #require(response.status == 200, "moto took \(name)")
            }
        }
        try await plant("\(day)/messages_\(time)_\(time)_liar.jsonl", [truncatedSource.wire])
        try await plant("\(day)/messages_\(time)_\(time)_again.jsonl", [good.wire])
        try await plant("\(day)/messages_\(good.event.timestampMs)_\(good.event.timestampMs)_\(alice.clientID).jsonl", [good.wire])

        let report = try await alice.sync("team")
        let problems = report.problems
        let text = problems.joined(separator: "\n")
        func problem(_ prefix: String) -> String { problems.first { $0.contains(prefix) } ?? "(none)" }
        #expect(problem("_mallory.jsonl: line 1: ").contains("content does not match content_hash"), "flipped bit:\n\(text)")
        #expect(problem("_mallory.jsonl: line 2: ").contains("signature"), "forged:\n\(text)")
        #expect(problem("_mallory.jsonl: line 3: ").contains("not authorized"), "non-member:\n\(text)")
        #expect(problem("_mallory.jsonl: line 5: ").contains("truncated"), "truncated:\n\(text)")
        #expect(problem("_blank.jsonl: line 2: ").contains("signature"), "after an empty line:\n\(text)")
        #expect(problem("_long.jsonl: line 1: ").contains("1048576 bytes, longer than an event may be"), "long line:\n\(text)")
        #expect(text.contains("_liar.jsonl: the name says"), "lying name:\n\(text)")
        #expect(text.contains("\(alice.clientID).jsonl: the name says client \(alice.clientID) but its events are by device"), "lying client:\n\(text)")
        let ignored = report.ignored.joined(separator: "\n")
        #expect(ignored.contains("README.txt") && ignored.contains("_empty.jsonl: empty"))
        #expect(ignored.contains("messages_1_2_..jsonl"))
        #expect(ignored.contains("a%2fb") && ignored.contains("a\\b"), "\(ignored)")
        let marker = "\(BucketLayout.logsPrefix("team"))\(BucketLayout.utcDate(time + 86_400_000))/"
        if kind == .s3 { #expect(ignored.contains(marker + ":"), "the folder marker:\n\(ignored)") }
        let oversized = kind == .folder ? "_huge.jsonl: 1073741824 bytes, over the limit" : "_huge.jsonl: 5242880 bytes, over the limit of 4194304; not read"
        #expect(text.contains(oversized), "\(text)")
        // The good events arrived once each, whatever file they came in.
        #expect(Set(report.accepted) == [good.event.eventID, truncatedSource.event.eventID, beyond.event.eventID] && report.accepted.count == 3)
        #expect(try alice.node.timeline("team", limit: 10).filter { $0.body == "good" }.count == 1)
        #expect(try alice.node.bucketFileProblems("team").count >= 2)

        // The offline audit names the same faults and exits non-clean.
        let audit = try await BucketAuditor(settings: world.settings).audit(objects, roomID: "team")
        #expect(!audit.isClean)
        let found = audit.audit.problems.map(\.text).joined(separator: "\n")
        for expected in [
            "_mallory.jsonl, line 1: invalid event: content does not match content_hash", "_mallory.jsonl, line 2: invalid event: signature rejected",
            "_mallory.jsonl, line 3: not authorized",
            "_mallory.jsonl, line 5: truncated", "_blank.jsonl, line 2: invalid event: signature rejected",
            "_long.jsonl, line 1: 1048576 bytes, longer than an event may be", "_liar.jsonl: the name says",
            "\(alice.clientID).jsonl: the name says client",
        ] + [oversized] {
            #expect(found.contains(expected), "audit misses \(expected):\n\(found)")
        }
        let warnings = audit.warnings.joined(separator: "\n")
        for expected in ["README.txt", "_empty.jsonl: empty", "messages_1_2_..jsonl", "a%2fb", "a\\b", "re-uploaded"] + (kind == .s3 ? [marker] : []) {
            #expect(warnings.contains(expected), "audit warnings miss \(expected):\n\(warnings)")
        }
    }

    @Test(
        "Through a faulty S3 (503 and 500 bursts, a reset and a short body, a PUT whose answer is lost) every event arrives once and the bucket audits clean",
        .enabled(if: S3TestServer.isAvailable))
    func faultyServer() async throws {
        let prefix = S3TestServer.freshPrefix()
        let path = String(prefix.dropLast())
        let world = try BucketWorld(throughFaultProxy: prefix)
        let (alice, bob) = try await twoMembers(world)
        let before = try await world.logFiles("team").count
        let logs = path + "/rooms/team/logs/"
        try await S3TestServer.inject([
            .init("PUT", path: logs, "status:503:SlowDown", count: 2), .init("PUT", path: logs, "status:500:InternalError"),
            .init("PUT", path: logs, "drop-response"),
        ])
        var sent: [String] = []
        for index in 0..<3 {
            sent.append(try bob.node.send("team", text: "through the storm \(index)").event.eventID)
            let flushed = try await bob.flush("team")
            #expect(flushed.events == 1 && flushed.files.count == 1)
        }
        #expect(try await S3TestServer.pendingFaults(path: logs) == 0, "every write fault happened")
        #expect(try bob.node.store.outboxStatus(roomID: "team", senderKey: bob.node.identity.signingKeyBase64).pending == 0)
        // One file per flush: the write whose answer was lost was not written again under another name.
        #expect(try await world.logFiles("team").count == before + 3)

        try await S3TestServer.inject([
            .init("GET", path: "prefix=\(path)", "status:503:SlowDown"), .init("GET", path: logs, "reset-body"), .init("GET", path: logs, "short-body"),
            .init("GET", path: logs, "status:500:InternalError", count: 2),
        ])
        let report = try await alice.sync("team")
        #expect(try await S3TestServer.pendingFaults(path: path) == 0, "every read fault happened")
        #expect(report.accepted == sent)
        #expect(report.problems.isEmpty, "\(report.problems)")
        #expect(try alice.node.timeline("team", limit: 10).compactMap(\.body).filter { $0.hasPrefix("through the storm") }.count == 3)
        let audit = try await BucketAuditor().audit(
            try BucketURL(S3TestServer.url(prefix: prefix)).open(environment: S3TestServer.awsEnvironment), roomID: "team")
        #expect(audit.isClean, "\(audit.audit.problems.map(\.text))")
    }

    @Test(
        "A log file listed small but answered with 1 GiB is refused after a bounded read, read again once its wait is over even after newer files, and given up on in the end",
        .enabled(if: S3TestServer.isAvailable))
    func hugeAnswer() async throws {
        let prefix = S3TestServer.freshPrefix()
        let path = String(prefix.dropLast())
        let world = try BucketWorld(throughFaultProxy: prefix)
        world.settings.maxObjectBytes = 4 << 20
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        _ = try await alice.sync("team")
        let lied = try bob.node.send("team", text: "behind a lying server")
        let file = try #require(try await bob.flush("team").files.first)
        // A newer file ten minutes on: the listing cursor moves past the failing file, which must still be read.
        clock.advance(600_000)
        _ = try alice.node.send("team", text: "ten minutes later")
        _ = try await alice.flush("team")

        try await S3TestServer.inject([.init("GET", path: "\(path)/\(file)", "huge-body:\(1 << 30)")])
        let refused = try await alice.sync("team")
        #expect(try await S3TestServer.pendingFaults(path: "\(path)/\(file)") == 0, "the huge answer was sent")
        #expect(refused.accepted.isEmpty)
        #expect(
            refused.problems.contains { $0.contains(file) && $0.contains("more than the limit") && $0.contains("tried again later") }, "\(refused.problems)")
        // Until its wait is over the file is not asked for: this fault stays unused.
        try await S3TestServer.inject([.init("GET", path: "\(path)/\(file)", "status:500:InternalError")])
        let waiting = try await alice.sync("team")
        #expect(waiting.accepted.isEmpty)
        #expect(try await S3TestServer.pendingFaults(path: "\(path)/\(file)") == 1, "read during its wait")
        clock.advance(2_000)
        // Found by name although the listing now starts after it; the 500 is retried by the store.
        let truthful = try await alice.sync("team")
        #expect(truthful.accepted == [lied.event.eventID], "\(truthful)")
        #expect(truthful.problems.isEmpty, "\(truthful.problems)")

        // A file that keeps failing is given up on after `readGiveUpMs` (here at once), recorded with its problem.
        _ = try bob.node.send("team", text: "behind a server that keeps lying")
        let second = try #require(try await bob.flush("team").files.first)
        var impatient = world.settings
        impatient.readGiveUpMs = 0
        let giving = BucketClient(node: alice.node, settings: impatient) { _ throws(BucketError) in world.objects }
        try await S3TestServer.inject([.init("GET", path: "\(path)/\(second)", "huge-chunked:\(1 << 30)")])
        let given = try await giving.sync("team")
        #expect(given.accepted.isEmpty)
        #expect(given.problems.contains { $0.contains(second) && $0.contains("given up") }, "\(given.problems)")
        #expect(try alice.node.bucketFileProblems("team").contains { $0.name == second })
        // What the reader let in of the two 1 GiB answers: the limit and socket buffers.
        #expect(try await S3TestServer.hugeBytesSent(path: path) < 2 * (world.settings.maxObjectBytes + (16 << 20)))
    }

    @Test("A file written while a sync is listing the room is read by the next sync, and every event arrives once", arguments: BucketKind.all)
    func writtenDuringListing(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let (alice, bob) = try await twoMembers(world)
        let before = try bob.node.send("team", text: "before the listing")
        _ = try await bob.flush("team")
        let during = try bob.node.send("team", text: "during the listing")
        // Bob's flush lands just after the listing of Alice's sync came back, so that sync cannot have seen it.
        let hooked = ListingHookStore(world.objects, logsPrefix: BucketLayout.logsPrefix("team")) { _ = try await bob.flush("team") }
        let listingAlice = BucketClient(node: alice.node, settings: world.settings) { _ throws(BucketError) in hooked }
        let first = try await listingAlice.sync("team")
        #expect(hooked.fired)
        #expect(first.accepted == [before.event.eventID])
        let second = try await alice.sync("team")
        #expect(second.accepted == [during.event.eventID])
        let third = try await alice.sync("team")
        #expect(third.accepted.isEmpty && third.filesRead == 0)
        let bodies = try alice.node.timeline("team", limit: 10).compactMap(\.body)
        #expect(bodies.filter { $0 == "before the listing" }.count == 1 && bodies.filter { $0 == "during the listing" }.count == 1)
    }

    @Test("A fork across two files is detected and the device's later events are refused", arguments: BucketKind.all)
    func forkAcrossFiles(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        let original = try bob.node.send("team", text: "the real one")
        _ = try await bob.flush("team")
        _ = try await alice.sync("team")
        // The same device key signs another event at the same seq: equivocation.
        let head = try #require(try bob.node.store.chainHead(roomID: "team", senderKey: bob.node.identity.signingKeyBase64))
        let twin = bob.node.identity.signingKey.signEvent(
            roomID: "team", type: EventType.message, content: JSONObject(["msgtype": "text", "body": "the other one"]), parentEventID: nil,
            senderID: "bob", seq: head.seq, previousHash: original.event.prevEventHash, timestampMs: original.event.timestampMs,
            eventID: EventID.make(roomID: "team", timestampMs: original.event.timestampMs, randomBytes: Array(repeating: 7, count: 16)))
        let name = LogFileName(roomID: "team", startMs: twin.event.timestampMs, endMs: twin.event.timestampMs, clientID: "bob.fork")
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: twin.wire + [0x0A], retention: nil)
        let report = try await alice.sync("team")
        #expect(report.problems.contains { $0.contains("fork") })
        #expect(try alice.node.store.forkProofs(roomID: "team").count == 1)
        // The first event of that seq stays; what the device signs after is refused.
        _ = try bob.node.send("team", text: "after the fork")
        _ = try await bob.flush("team")
        let later = try await alice.sync("team")
        #expect(later.accepted.isEmpty)
        #expect(later.problems.contains { $0.contains("fork") }, "\(later.problems)")
        let bodies = try alice.node.timeline("team", limit: 10).compactMap(\.body)
        #expect(bodies.contains("the real one") && !bodies.contains("the other one") && !bodies.contains("after the fork"))
        let audit = try await BucketAuditor().audit(world.objects, roomID: "team")
        #expect(audit.audit.problems.contains { $0.message.contains("fork") })
    }

    @Test("Copies of the creator's invite and join in a file named to sort first keep nobody out", arguments: BucketKind.all)
    func squattedInviteIDs(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let alice = world.client(try world.node("alice"))
        let bob = world.client(try world.node("bob"))
        let founding = try await alice.createRoom("team", bucket: world.url)
        let invite = try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        // Strangers with write access copy the ids (and times) of alice's join and invite into events of their own,
        // each the first of its chain, in a file whose name sorts before every other, so they are read first.
        var mallory = TestDevice("mallory")
        var trudy = TestDevice("trudy")
        let copies = [
            mallory.sign(
                "team", EventType.member, MemberContent(membership: .join, userID: "mallory", devices: [mallory.binding]).jsonObject, at: 0,
                copying: founding[1].event),
            trudy.sign(
                "team", EventType.member,
                MemberContent(membership: .invite, userID: "trudy", devices: [DeviceBinding(signingKey: trudy.publicKey)]).jsonObject, at: 0,
                copying: invite.event),
        ]
        let name = LogFileName(roomID: "team", startMs: 1, endMs: 1, clientID: "aaa")
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: copies.flatMap { $0.wire + [0x0A] }, retention: nil)

        let code = try #require(try alice.inviteCode("team"))
        let joined = try await bob.join(code)
        #expect(try bob.node.store.event(eventID: joined.event.eventID)?.status == .accepted)
        let report = try await alice.sync("team")
        #expect(report.accepted.contains(joined.event.eventID))
        #expect(try alice.node.roomState("team").isJoinedDevice(user: "bob", key: bob.node.identity.signingKeyBase64))
        #expect(try alice.node.roomState("team").members["mallory"] == nil && alice.node.roomState("team").members["trudy"] == nil)
        #expect(try bob.node.store.eventIDCollisions(roomID: "team").map(\.eventID).sorted() == [founding[1], invite].map(\.event.eventID).sorted())
        #expect(report.problems.contains { $0.contains(name.key) && $0.contains("copied an id") }, "\(report.problems)")
    }

    @Test("A replaced metadata.json is caught by the joiner's pinned creator key, and nothing is joined", arguments: BucketKind.all)
    func replacedMetadata(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let alice = world.client(try world.node("alice"))
        let bob = world.client(try world.node("bob"))
        _ = try await alice.createRoom("team", bucket: world.url)
        try alice.node.invite("team", userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await alice.flush("team")
        let code = try #require(try alice.inviteCode("team"))
        // An attacker with write access swaps in a room they created (on S3, a plain PUT that overwrites).
        var mallory = TestDevice("mallory")
        let json: JSONValue = [
            "format": "parley.bucket.room.v1", "room_id": "team",
            "events": .array(try mallory.create("team", at: 1_790_000_000_000).map { try JSONParser().parse($0.wire) }),
        ]
        switch world.url {
        case .folder(let path):
            try FileManager.default.removeItem(atPath: path + "/" + BucketLayout.metadataKey("team"))
            _ = try await world.objects.putIfAbsent(key: BucketLayout.metadataKey("team"), bytes: CanonicalJSON.encode(json), retention: nil)
        case .s3:
            let s3 = try #require(world.objects as? S3Store)
            let response = try await s3.perform(method: .PUT, key: BucketLayout.metadataKey("team"), body: CanonicalJSON.encode(json), maxBytes: 1024)
            try #require(response.status == 200)
        }
        do {
            _ = try await bob.join(code)
            Issue.record("joined a room with a replaced metadata.json")
        } catch let error as ClientError {
            #expect(error.message.contains("replaced"))
        }
        #expect(try bob.node.store.roomIDs().isEmpty)
        let audit = try await BucketAuditor().audit(world.objects, roomID: "team")
        #expect(audit.audit.problems.contains { $0.file == BucketLayout.metadataKey("team") && $0.message.contains("replaced") })
    }

    @Test func `a sync reads files in windows bounded by bytes and by files, in listing order, a file larger than a window alone`() {
        let sizes: [Int64] = [400, 400, 300, 5_000, 100, 100, 100, 100, 100]
        let objects = sizes.enumerated().map { ObjectInfo(key: "k\($0.offset)", size: $0.element) }
        let windows = BucketTransport.windows(objects, maxFiles: 3, maxBytes: 1_000)
        #expect(windows.map { $0.map(\.key) } == [["k0", "k1"], ["k2"], ["k3"], ["k4", "k5", "k6"], ["k7", "k8"]])
        #expect(BucketTransport.windows([], maxFiles: 3, maxBytes: 1_000).isEmpty)
    }

    @Test("A flush interrupted at any point resumes with the same file, never a second one", arguments: BucketKind.all)
    func interruptedFlush(kind: BucketKind) async throws {
        let world = try BucketWorld(kind)
        let (alice, bob) = try await twoMembers(world)
        let before = try await world.logFiles("team")
        // Killed after assigning the events to a file, before writing it.
        try bob.node.send("team", text: "one")
        let claimed = try #require(
            try bob.node.store.claimOutbox(
                .bucket, roomID: "team", senderKey: bob.node.identity.signingKeyBase64, limit: 100, createdMs: 0,
                assemble: { pending, _ in
                    (
                        LogFileName(roomID: "team", startMs: pending[0].timestampMs, endMs: pending.last!.timestampMs, clientID: bob.clientID).key,
                        pending.count,
                        pending.flatMap { $0.wire + [0x0A] }
                    )
                }))
        try bob.node.send("team", text: "two")
        // Killed after writing it, before recording that the bucket confirmed it.
        _ = try await world.objects.putIfAbsent(key: claimed.name, bytes: claimed.content, retention: nil)
        let report = try await bob.flush("team")
        #expect(report.files.first == claimed.name)
        let after = try await world.logFiles("team")
        #expect(after.count == before.count + 2)
        let received = try await alice.sync("team")
        #expect(received.accepted.count == 2 && received.duplicates == 0)
    }

    @Test("A name already taken by another object gets the next free one")
    func nameConflict() async throws {
        let world = try BucketWorld(.folder)
        let clock = TestClock()
        let (alice, bob) = try await twoMembers(world, aliceClock: clock, bobClock: clock)
        clock.advance(5000)
        let message = try bob.node.send("team", text: "mine")
        let name = LogFileName(roomID: "team", startMs: message.event.timestampMs, endMs: message.event.timestampMs, clientID: bob.clientID)
        _ = try await world.objects.putIfAbsent(key: name.key, bytes: Array("squatter\n".utf8), retention: nil)
        let report = try await bob.flush("team")
        #expect(report.files == [name.key.replacingOccurrences(of: bob.clientID, with: bob.clientID + ".1")])
        #expect(try await alice.sync("team").accepted == [message.event.eventID])
    }

    @Test("A joiner who was not invited is told so, and signs nothing")
    func uninvitedJoiner() async throws {
        let world = try BucketWorld(.folder)
        let alice = world.client(try world.node("alice"))
        let eve = world.client(try world.node("eve"))
        _ = try await alice.createRoom("team", bucket: world.url)
        do {
            _ = try await eve.join(try #require(try alice.inviteCode("team")))
            Issue.record("joined uninvited")
        } catch let error as ClientError {
            #expect(error.message.contains("not invited"))
        }
        #expect(try eve.node.store.chainHead(roomID: "team", senderKey: eve.node.identity.signingKeyBase64) == nil)
    }

    @Test func `an invite code a person gives is refused with what is wrong and what to do`() throws {
        func refusal(_ text: String) -> ClientError? {
            do {
                _ = try InviteCode(pasted: text)
                return nil
            } catch { return error }
        }
        let damaged = try #require(refusal("parley-invite:!!!"))
        #expect(damaged.code == .invalidArgument && damaged.message.hasPrefix("This is not a valid Parley invite code: "))
        #expect(damaged.remedy?.contains("parley-invite:") == true)
        let later = CodeText.encode(prefix: InviteCode.prefix, JSONObject(["v": 3]))
        let newer = try #require(refusal(later))
        #expect(newer.message.contains("version 3") && newer.remedy?.contains("Update Parley") == true, "\(newer)")
    }

    @Test func `the bucket of an invite code is its first bucket location this node can use`() throws {
        let fingerprint = String(repeating: "ab", count: 32)
        let code = InviteCode(
            roomID: "team", creatorFingerprint: fingerprint,
            locations: [.peer(address: "192.0.2.7:7000"), .bucket(url: "s3://UPPER"), .bucket(url: "s3://chat-bucket/p"), .bucket(url: "file:///srv/chat")])
        #expect(try code.bucket() == BucketURL("s3://chat-bucket/p"))

        let unusable = InviteCode(
            roomID: "team", creatorFingerprint: fingerprint,
            locations: [.relay(url: "wss://relay.example.net/"), .bucket(url: "gs://chat"), .unknown(kind: "later", JSONObject(["kind": "later"]))])
        do {
            _ = try unusable.bucket()
            Issue.record("a bucket was chosen among none")
        } catch {
            #expect(error.code == .noUsableLocation)
            #expect(error.message == "The invite code for room team lists no location this version of Parley can use:")
            #expect(error.details.count == 3 && error.details[0] == "a relay, wss://relay.example.net/", "\(error.details)")
            #expect(error.details[1].hasPrefix("a bucket it cannot use, gs://chat: ") && error.details[2].contains("(later)"), "\(error.details)")
            #expect(error.remedy?.contains("--bucket URL") == true)
        }
    }

    /// `event` with its signature replaced by one from `forger`'s key (over the same signing input).
    func forge(_ event: VerifiedEvent, by forger: TestDevice) throws -> [UInt8] {
        let signature = try forger.key.privateKey.signature(for: event.event.signingInput())
        var copy = event.event
        copy.signature = Base64.encode(signature)
        return copy.wireBytes()
    }
}

/// A store that runs `hook` once, right after the first listing under `logsPrefix` returns: a write that lands while
/// a sync is listing.
final class ListingHookStore: ObjectStore, @unchecked Sendable {
    let base: any ObjectStore
    let logsPrefix: String
    let hook: @Sendable () async throws -> Void
    private let lock = NSLock()
    private var hasFired = false

    init(_ base: any ObjectStore, logsPrefix: String, hook: @escaping @Sendable () async throws -> Void) {
        self.base = base
        self.logsPrefix = logsPrefix
        self.hook = hook
    }

    var fired: Bool { lock.withLock { hasFired } }
    var location: String { base.location }

    func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try await base.putIfAbsent(key: key, bytes: bytes, retention: retention)
    }

    func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try await base.get(key: key, maxBytes: maxBytes)
    }

    func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError) -> ListPage {
        let page = try await base.list(prefix: prefix, startAfter: startAfter, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
        let fire =
            prefix == logsPrefix
            && lock.withLock { () -> Bool in
                defer { hasFired = true }
                return !hasFired
            }
        if fire {
            do { try await hook() } catch { Issue.record("the hook failed: \(error)") }
        }
        return page
    }

    func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try await base.head(key: key)
    }

    func delete(key: String) async throws(BucketError) { try await base.delete(key: key) }
}
