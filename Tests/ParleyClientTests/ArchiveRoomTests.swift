import Crypto
import Foundation
import Logging
import ParleyCore
import ParleySync
import ParleyTesting
import Testing

@testable import ParleyBucket
@_spi(Tools) @testable import ParleyClient

/// A room with days of history in many small files, its past days archived by a member, and readers that start from
/// scratch: archives end end to end (docs/PROTOCOL.md §13.9).
final class ArchivedRoom: @unchecked Sendable {
    static let dayMs: Int64 = 86_400_000
    /// 2026-09-21 00:00 UTC.
    static let day0: Int64 = 1_789_948_800_000
    static let room = "team"

    let world: BucketWorld
    let days: Int
    let clock: TestClock
    let alice: BucketClient

    /// Alice writes `days` days of `filesPerDay` files of `eventsPerFile` messages each, then two files on the day
    /// after them ("today"), and her clock stands two hours into today.
    init(_ kind: BucketKind, days: Int = 3, filesPerDay: Int = 12, eventsPerFile: Int = 3) async throws {
        world = try BucketWorld(kind)
        self.days = days
        clock = TestClock(Self.day0 + 3_600_000)
        alice = world.client(try world.node("alice", clock: clock))
        _ = try await alice.createRoom(Self.room, bucket: world.url, name: "Team")
        for day in 0..<days {
            clock.ms = Self.day0 + Int64(day) * Self.dayMs + 7_200_000
            try await write(files: filesPerDay, eventsPerFile: eventsPerFile, label: "day \(day)")
        }
        clock.ms = Self.day0 + Int64(days) * Self.dayMs + 3_600_000
        try await write(files: 2, eventsPerFile: eventsPerFile, label: "today")
        clock.ms = Self.day0 + Int64(days) * Self.dayMs + 7_200_000
    }

    func write(files: Int, eventsPerFile: Int, label: String) async throws {
        for file in 0..<files {
            _ = try alice.node.publish(
                roomID: Self.room, (0..<eventsPerFile).map { OutgoingEvent.message("\(label), file \(file), message \($0)") })
            _ = try await alice.flush(Self.room)
            clock.advance(60_000)
        }
    }

    static func date(_ day: Int) -> String { BucketLayout.utcDate(day0 + Int64(day) * dayMs) }

    var creatorFingerprint: String { InviteCode.fingerprint(ofKey: alice.node.identity.signingKeyBase64)! }

    /// A device that never synced the room reads it from scratch: its metadata, then one sync.
    func reader(_ name: String, readsArchives: Bool = true, counting: Bool = false) async throws -> (
        client: BucketClient, report: SyncReport, requests: [String: Int]
    ) {
        let node = try world.node(name, clock: TestClock(clock.ms))
        var settings = world.settings
        settings.readsArchives = readsArchives
        let counter = counting ? CountingStore(world.objects) : nil
        let client = BucketClient(node: node, settings: settings) { url throws(BucketError) in
            if let counter { return counter }
            return try url.open(environment: S3TestServer.awsEnvironment)
        }
        let transport = client.transport
        try transport.pin(
            try await transport.foundingEvents(roomID: Self.room, creatorFingerprint: creatorFingerprint, objects: world.objects), roomID: Self.room)
        try node.addBucketRoom(roomID: Self.room, bucketURL: world.url.text, creatorFingerprint: creatorFingerprint)
        counter?.reset()
        let report = try await client.sync(Self.room)
        return (client, report, counter?.snapshot ?? [:])
    }

    /// Every event the node holds in the room, as stored, in the room's order.
    static func events(_ client: BucketClient) throws -> [[UInt8]] {
        var events: [[UInt8]] = []
        try client.node.forEachEvent(room) { events.append($0) }
        return events
    }

    var logFiles: Int { get async throws { try await world.logFiles(Self.room).count } }

    func archiveObjects() async throws -> [ObjectInfo] {
        try await world.objects.listAll(prefix: BucketLayout.archivePrefix(Self.room))
    }

    // MARK: Lies, planted in a folder bucket

    func path(_ key: String) -> String { "\(world.directory.path)/bucket/\(key)" }

    /// The one part of day `day` Alice wrote: its manifest and its body's lines.
    func part(of day: Int) async throws -> (manifest: ArchiveManifest, lines: [ArraySlice<UInt8>]) {
        let key = try #require(
            try await archiveObjects().map(\.key).first {
                $0.hasPrefix(BucketLayout.archiveFolder(roomID: Self.room, date: Self.date(day))) && $0.hasSuffix(".manifest.json")
            })
        guard case .success((let name, _)) = ArchiveName.parse(key: key, roomID: Self.room) else { throw BucketError(.invalidContent, "not an archive key") }
        let manifest = try ArchiveManifest(parsing: try await world.objects.get(key: key, maxBytes: ArchiveManifest.maxBytes), name: name)
        let body = try await world.objects.get(key: manifest.body.key, maxBytes: ArchiveManifest.maxBodyBytes)
        return (manifest, ArchiveBody.lines(try ArchiveBody.inflate(body, manifest: manifest)).lines)
    }

    /// Replaces a part by one whose body is `lines` and whose manifest says so (hash, size) and is signed again by
    /// `signer`, under `clientID`'s keys: a lie that gets past the hash, as a device could write it.
    func replace(_ manifest: ArchiveManifest, lines: [ArraySlice<UInt8>], signer: DeviceSigningKey, clientID: String? = nil) throws {
        for key in [manifest.name.manifestKey, manifest.body.key] { try FileManager.default.removeItem(atPath: path(key)) }
        var lying = manifest
        lying.name = ArchiveName(roomID: manifest.roomID, firstMs: manifest.firstMs, lastMs: manifest.lastMs, clientID: clientID ?? manifest.name.clientID)
        let body = Gzip.compress(lines.flatMap { Array($0) + [0x0A] })
        lying.body = .init(key: lying.name.bodyKey, sha256: Hex.encode(SHA256.hash(data: body)), size: Int64(body.count))
        lying.sign(with: signer)
        try Data(body).write(to: URL(fileURLWithPath: path(lying.body.key)))
        try Data(lying.encoded()).write(to: URL(fileURLWithPath: path(lying.name.manifestKey)))
    }
}

@Suite struct ArchiveRoomTests {
    @Test("a joiner of a room with archives reads them and only the newer log files, and ends with the same events as one without", arguments: BucketKind.all)
    func readsArchives(kind: BucketKind) async throws {
        let room = try await ArchivedRoom(kind)
        let written = try await room.alice.writeArchives(ArchivedRoom.room)
        #expect(written.map(\.date) == (0..<room.days).map(ArchivedRoom.date))
        #expect(written.allSatisfy { $0.written.count == 1 && $0.isSettled })

        let files = try await room.logFiles
        let withArchives = try await room.reader("bob", counting: true)
        let without = try await room.reader("carol", readsArchives: false, counting: true)
        #expect(withArchives.report.problems.isEmpty)
        #expect(withArchives.report.archivesRead == room.days)
        // Only today's two files are read as log files.
        #expect(withArchives.report.filesRead == 2)
        #expect(without.report.filesRead == files)
        #expect(try ArchivedRoom.events(withArchives.client) == ArchivedRoom.events(without.client))
        #expect(try ArchivedRoom.events(withArchives.client) == ArchivedRoom.events(room.alice))

        // Two GETs a day (a manifest, a body), today's files and metadata.json; a handful of listings.
        let gets = withArchives.requests["get", default: 0]
        #expect(gets <= 2 * room.days + 2 + 1)
        #expect(withArchives.requests["list", default: 0] <= 6)
        #expect(without.requests["get", default: 0] >= files)
        // A second sync reads nothing: the covered files are recorded as read.
        let again = try await withArchives.client.sync(ArchivedRoom.room)
        #expect(again.filesRead == 0 && again.archivesRead == 0 && again.accepted.isEmpty)
    }

    enum Lie: String, CaseIterable, CustomStringConvertible, Sendable {
        case alteredBody, claimsAFileItLacks, missingEvent, reordered, signedByAStranger
        var description: String { rawValue }
        var code: ArchiveError.Code {
            switch self {
            case .alteredBody: .bodyHashMismatch
            // One device's chain catches a reordering first: the seq due is not the one found.
            case .claimsAFileItLacks, .missingEvent, .reordered: .chainMismatch
            case .signedByAStranger: .signerNotMember
            }
        }
    }

    @Test("a lying archive is reported and its day's log files are read instead, ending with the full history", arguments: Lie.allCases)
    func lyingArchive(lie: Lie) async throws {
        let room = try await ArchivedRoom(.folder)
        _ = try await room.alice.writeArchives(ArchivedRoom.room)
        let (manifest, lines) = try await room.part(of: 1)
        let key: String
        switch lie {
        case .alteredBody:
            var body = try Array(Data(contentsOf: URL(fileURLWithPath: room.path(manifest.body.key))))
            body[body.count / 2] ^= 0x01
            try Data(body).write(to: URL(fileURLWithPath: room.path(manifest.body.key)))
            key = manifest.name.manifestKey
        case .claimsAFileItLacks:
            // The events of the day's second file (3 lines) are left out; the manifest still names it.
            try room.replace(manifest, lines: Array(lines[..<3] + lines[6...]), signer: room.alice.node.identity.signingKey)
            key = manifest.name.manifestKey
        case .missingEvent:
            try room.replace(manifest, lines: Array(lines[..<10] + lines[11...]), signer: room.alice.node.identity.signingKey)
            key = manifest.name.manifestKey
        case .reordered:
            var swapped = lines
            swapped.swapAt(10, 11)
            try room.replace(manifest, lines: swapped, signer: room.alice.node.identity.signingKey)
            key = manifest.name.manifestKey
        case .signedByAStranger:
            let mallory = try room.world.node("mallory")
            let clientID = BucketClient(node: mallory).clientID
            try room.replace(manifest, lines: lines, signer: mallory.identity.signingKey, clientID: clientID)
            key = ArchiveName(roomID: ArchivedRoom.room, firstMs: manifest.firstMs, lastMs: manifest.lastMs, clientID: clientID).manifestKey
        }

        let reader = try await room.reader("bob")
        let problems = reader.report.problems.filter { $0.hasPrefix(key) }
        #expect(problems.count == 1)
        #expect(problems.first?.contains(lie.code.rawValue) == true)
        #expect(reader.report.archivesRead == room.days - 1)
        // The day's 12 files and today's 2.
        #expect(reader.report.filesRead == 14)
        #expect(try ArchivedRoom.events(reader.client) == ArchivedRoom.events(room.alice))
    }

    @Test("two devices archiving the same day at once is harmless: readers take one set and get the whole history")
    func concurrentWriters() async throws {
        let room = try await ArchivedRoom(.folder, days: 2)
        // Bob reads everything and joins: a member who has read every file of the past days.
        let bob = room.world.client(try room.world.node("bob", clock: room.clock))
        try room.alice.node.invite(ArchivedRoom.room, userID: "bob", key: bob.node.identity.signingKeyBase64)
        _ = try await room.alice.flush(ArchivedRoom.room)
        _ = try await bob.join(try InviteCode(parsing: try #require(try room.alice.inviteCode(ArchivedRoom.room)).text))

        async let byAlice = room.alice.transport.writeArchive(ArchivedRoom.room, date: ArchivedRoom.date(1))
        async let byBob = bob.transport.writeArchive(ArchivedRoom.room, date: ArchivedRoom.date(1))
        let reports: [ArchiveWriteReport] = try await [byAlice, byBob]
        #expect(reports.allSatisfy { $0.isSettled })
        #expect(reports.contains { !$0.written.isEmpty })
        let manifests = try await room.archiveObjects().filter { $0.key.hasSuffix(".manifest.json") && $0.key.contains(ArchivedRoom.date(1)) }
        #expect((1...2).contains(manifests.count))

        let reader = try await room.reader("carol")
        #expect(reader.report.problems.isEmpty)
        #expect(reader.report.archivesRead == 1)
        // Bob holds everything: his own join too, which Alice has not read yet.
        #expect(try ArchivedRoom.events(reader.client) == ArchivedRoom.events(bob))
    }

    @Test("a device never writes two archives of one day, however often it is asked")
    func neverTwice() async throws {
        let room = try await ArchivedRoom(.folder, days: 1)
        let first = try await room.alice.writeArchives(ArchivedRoom.room, date: ArchivedRoom.date(0))
        #expect(first.first?.written.count == 1)
        let objects = try await room.archiveObjects()
        let again = try await room.alice.writeArchives(ArchivedRoom.room, date: ArchivedRoom.date(0))
        #expect(again.first?.written.isEmpty == true)
        #expect(again.first?.skipped?.contains("archived") == true)
        // And the days it settled are not looked at again.
        #expect(try await room.alice.writeArchives(ArchivedRoom.room).isEmpty)
        #expect(try await room.archiveObjects() == objects)
    }

    @Test("a day whose files are not all read here, or that ended less than an hour ago, is not archived")
    func notYet() async throws {
        let room = try await ArchivedRoom(.folder, days: 1)
        // A file of day 0 this node never read.
        let planted = LogFileName(
            roomID: ArchivedRoom.room, startMs: ArchivedRoom.day0 + 80_000_000, endMs: ArchivedRoom.day0 + 80_000_000, clientID: "someone"
        ).key
        _ = try await room.world.objects.putIfAbsent(key: planted, bytes: Array("{}\n".utf8), retention: nil)
        let report = try await room.alice.writeArchives(ArchivedRoom.room, date: ArchivedRoom.date(0))
        #expect(report.first?.written.isEmpty == true && report.first?.isSettled == false)
        await #expect(throws: ClientError.self) { try await room.alice.writeArchives(ArchivedRoom.room, date: ArchivedRoom.date(1)) }
        #expect(try await room.archiveObjects().isEmpty)
    }

    @Test("a running node archives the past days of its rooms after a sync, and not again at its next look")
    func runningNode() async throws {
        let room = try await ArchivedRoom(.folder, days: 2)
        let watcher = ArchiveWatcher()
        var settings = NodeRunner.Settings()
        settings.archiveEveryMs = 0
        let runner = NodeRunner(client: room.alice, settings: settings, observer: watcher, logger: Logger(label: "parley.test"))
        var looks: [[ArchiveWriteReport]] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await runner.run() }
            for await reports in watcher.reports {
                looks.append(reports)
                if looks.count == 2 { break }
                // Another sync, and with it another look.
                room.clock.advance(60_000)
                _ = try room.alice.node.send(ArchivedRoom.room, text: "one more")
            }
            runner.shutDown()
            try await group.waitForAll()
        }
        #expect(looks[0].map(\.date) == [ArchivedRoom.date(0), ArchivedRoom.date(1)])
        #expect(looks[0].allSatisfy { $0.written.count == 1 })
        #expect(looks[1].isEmpty)
        #expect(try await room.archiveObjects().count == 4)
    }

    @Test("parley bucket archive writes the past days' archives now, and says why it writes none the second time")
    func command() async throws {
        // The command runs on the real clock: the history is dated days before it.
        let room = try await ArchivedRoom(.folder, days: 2, filesPerDay: 3)
        let daysAgo = (Int64(Date().timeIntervalSince1970 * 1000) - ArchivedRoom.day0) / ArchivedRoom.dayMs
        try #require(daysAgo >= 3, "the fixture's history must lie in the past")
        let alice = ParleyCommand(home: room.world.directory.file("alice"))
        let first = try alice.run(["bucket", "archive", ArchivedRoom.room, "--json"])
        try #require(first.status == 0, "\(first.stderr)")
        let days = try JSONParser().parse(Array(first.stdout.utf8)).array
        let written = days.filter { !($0["written"]?.array.isEmpty ?? true) }.map { $0["date"]!.text }
        #expect(Array(written.prefix(3)) == [ArchivedRoom.date(0), ArchivedRoom.date(1), ArchivedRoom.date(2)])
        let again = try alice.run(["bucket", "archive", ArchivedRoom.room, "--date", ArchivedRoom.date(1)])
        #expect(again.status == 0)
        #expect(again.stdout == "\(ArchivedRoom.room) \(ArchivedRoom.date(1)): not written: this device archived \(ArchivedRoom.date(1)) already\n")
        let future = try alice.run(["bucket", "archive", ArchivedRoom.room, "--date", "2999-01-01"])
        #expect(future.status == 1)
        #expect(future.stderr.contains("ended less than an hour ago"))
    }
}

/// Hands a test what a running node says of its archives.
final class ArchiveWatcher: NodeRunnerObserver, @unchecked Sendable {
    let reports: AsyncStream<[ArchiveWriteReport]>
    private let continuation: AsyncStream<[ArchiveWriteReport]>.Continuation

    init() { (reports, continuation) = AsyncStream.makeStream() }

    func roomArchived(_ room: BucketRoom, _ reports: [ArchiveWriteReport]) { continuation.yield(reports) }
    func roomSynced(_ room: BucketRoom, _ report: SyncReport) {}
    func roomFailed(_ room: BucketRoom, report: String) {}
    func roomRecovered(_ room: BucketRoom, report: String) {}
    func flushingBeforeExit(events: Int, rooms: Int) {}
    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {}
}
