import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// A first sync that reads archives before log files (docs/PROTOCOL.md §13.9.5), as transcripts: each input the driver
/// would hand over, and the action expected back.
@Suite struct BucketPollerArchiveTests {
    static let room = ArchiveDay.room
    /// 2023-11-16T12:00:00Z: 2023-11-14 ended more than an hour ago.
    static let now: Int64 = 1_700_136_000_000
    static let day12: Int64 = 1_699_747_200_000
    static let day13: Int64 = 1_699_833_600_000
    static let day15: Int64 = 1_700_006_400_000

    /// Archive parts of 2023-11-14 (ArchiveDay's three files), of as many parts as `limits` make.
    let day14: [ArchiveBuilder.Part]
    /// An archive of 2023-11-13: two messages of dave's in one file.
    let day13: [ArchiveBuilder.Part]

    init() throws {
        day14 = try ArchiveDay().build()
        var dave = TestDevice("dave")
        let events = [dave.message(Self.room, "one", at: Self.day13 + 3_600_000), dave.message(Self.room, "two", at: Self.day13 + 3_700_000)]
        let file = ArchiveBuilder.FileRecord(
            name: LogFileName(roomID: Self.room, startMs: Self.day13 + 3_600_000, endMs: Self.day13 + 3_700_000, clientID: ArchiveDay.clientID(dave)),
            size: 700, senderKey: dave.publicKey, firstSeq: 1, lastSeq: 2)
        day13 = try ArchiveBuilder.build(
            roomID: Self.room, date: "2023-11-13", clientID: ArchiveDay.clientID(dave), signer: dave.key, files: [file], events: events)
    }

    func poller(_ progress: BucketPoller.Progress = .init(), now: Int64 = Self.now) -> BucketPoller {
        BucketPoller(roomID: Self.room, settings: .init(), progress: progress, hasGap: false, now: now)
    }

    func manifestObject(_ part: ArchiveBuilder.Part) -> ObjectInfo {
        ObjectInfo(key: part.manifest.name.manifestKey, size: Int64(part.manifestBytes.count))
    }

    func bodyObject(_ part: ArchiveBuilder.Part) -> ObjectInfo { ObjectInfo(key: part.manifest.body.key, size: Int64(part.body.count)) }

    /// What listing `archive/` finds of these parts: each manifest and its body.
    func listing(_ parts: [ArchiveBuilder.Part]) -> [ObjectInfo] { parts.flatMap { [bodyObject($0), manifestObject($0)] } }

    func readPart(_ part: ArchiveBuilder.Part) -> BucketPoller.ArchivePart {
        .init(manifest: part.manifest, body: bodyObject(part), manifestSize: Int64(part.manifestBytes.count))
    }

    func manifests(_ parts: [ArchiveBuilder.Part]) -> [String: Result<[UInt8], BucketError>] {
        Dictionary(uniqueKeysWithValues: parts.map { ($0.manifest.name.manifestKey, .success($0.manifestBytes)) })
    }

    func log(_ startMs: Int64, client: String = "erin.0123456789ab") -> ObjectInfo {
        ObjectInfo(key: LogFileName(roomID: Self.room, startMs: startMs, endMs: startMs + 10, clientID: client).key, size: 100)
    }

    func folder(_ date: String) -> String { "rooms/general/logs/\(date)/" }

    @Test func `a first sync reads the archives, then lists only the days they left uncovered and those after the newest`() throws {
        var poller = poller()
        #expect(poller.readsArchives)
        #expect(poller.startArchives() == .listArchives)
        #expect(poller.archivesListed(listing(day13 + day14)) == .recall(keys: (day13 + day14).map(\.manifest.name.manifestKey)))
        #expect(poller.archivesRecalled(seen: []) == .readManifests((day13 + day14).map(manifestObject)))
        let parts = (day13 + day14).map(readPart)
        #expect(poller.manifestsRead(manifests(day13 + day14)) == .readArchives(parts))
        for part in parts { poller.archiveRead(part) }
        #expect(poller.archivesStored() == .listLogFolders)
        let uncovered = log(Self.day12 + 5_000)
        #expect(
            poller.logFoldersListed(["2023-11-12", "2023-11-13", "2023-11-14", "2023-11-15", "notes"].map(folder))
                == .listLogs(folders: [folder("2023-11-12")]))
        #expect(poller.logsListed([uncovered]) == .done)
        #expect(poller.start() == .list(logsAfter: folder("2023-11-15"), hintsAfter: "rooms/general/hints/0000000000000"))
        let newer = log(Self.day15 + 5_000)
        #expect(poller.listed(logs: [newer], hints: []) == .recall(keys: [uncovered.key, newer.key]))
        #expect(poller.recalled(seen: [], failures: [:]) == .read([uncovered, newer]))
        let outcome = poller.finish()
        #expect(outcome.progress == BucketPoller.Progress(logsCursorMs: Self.day15 + 5_000, hintsCursorMs: 0, fullListingMs: Self.now))
        #expect(poller.problems.isEmpty && poller.ignored.isEmpty)
    }

    @Test func `the logs cursor moves past the covered files when nothing follows the archives`() {
        var poller = poller()
        _ = poller.startArchives()
        _ = poller.archivesListed(listing(day14))
        _ = poller.archivesRecalled(seen: [])
        _ = poller.manifestsRead(manifests(day14))
        poller.archiveRead(readPart(day14[0]))
        #expect(poller.archivesStored() == .listLogFolders)
        #expect(poller.logFoldersListed([folder("2023-11-14")]) == .done)
        #expect(poller.start() == .list(logsAfter: folder("2023-11-15"), hintsAfter: "rooms/general/hints/0000000000000"))
        #expect(poller.listed(logs: [], hints: []) == .recall(keys: []))
        #expect(poller.recalled(seen: [], failures: [:]) == .read([]))
        // The newest covered file starts at t0 + 2,500 ms: the next sync lists from two minutes before it.
        #expect(poller.finish().progress.logsCursorMs == ArchiveDay.t0 + 2_500)
    }

    @Test func `a room without archives is listed whole, as before`() {
        var poller = poller()
        #expect(poller.startArchives() == .listArchives)
        #expect(poller.archivesListed([ObjectInfo(key: "rooms/general/archive/README.txt", size: 9)]) == .done)
        #expect(poller.start() == .list(logsAfter: nil, hintsAfter: "rooms/general/hints/0000000000000"))
        #expect(
            poller.ignored == ["rooms/general/archive/README.txt: not an archive object: not of the form {YYYY-MM-DD}/{first}_{last}_{client}.manifest.json"])
    }

    @Test func `a manifest that fails its checks is reported, and its day's folder is listed`() {
        var poller = poller()
        _ = poller.startArchives()
        _ = poller.archivesListed(listing(day13 + day14))
        _ = poller.archivesRecalled(seen: [])
        var tampered = manifests(day13 + day14)
        let broken = day13[0].manifest.name.manifestKey
        tampered[broken] = .success(
            Array(String(decoding: day13[0].manifestBytes, as: UTF8.self).replacingOccurrences(of: "\"size\":700", with: "\"size\":701").utf8))
        #expect(poller.manifestsRead(tampered) == .readArchives(day14.map(readPart)))
        #expect(poller.problems.count == 1 && poller.problems[0].hasPrefix("\(broken): bad_signature: "))
        poller.archiveRead(readPart(day14[0]))
        #expect(poller.archivesStored() == .listLogFolders)
        #expect(poller.logFoldersListed(["2023-11-13", "2023-11-14"].map(folder)) == .listLogs(folders: [folder("2023-11-13")]))
        let file = log(Self.day13 + 3_600_000, client: ArchiveDay.clientID(TestDevice("dave")))
        #expect(poller.logsListed([file]) == .done)
        _ = poller.start()
        #expect(poller.listed(logs: [], hints: []) == .recall(keys: [file.key]))
    }

    @Test func `a part that fails leaves its day to the log files, and the files of the parts that verified are not read`() throws {
        var limits = ArchiveBuilder.Limits()
        limits.maxEvents = 3
        let split = try ArchiveDay().build(limits: limits)
        #expect(split.count == 3)
        var poller = poller()
        _ = poller.startArchives()
        _ = poller.archivesListed(listing(day13 + split))
        _ = poller.archivesRecalled(seen: [])
        #expect(poller.manifestsRead(manifests(day13 + split)) == .readArchives((day13 + split).map(readPart)))
        poller.archiveRead(readPart(day13[0]))
        poller.archiveRead(readPart(split[0]))
        poller.archiveFailed(readPart(split[1]), reason: "chain_mismatch: line 2 is at seq 3, where the chain's seq 2 was due")
        poller.archiveRead(readPart(split[2]))
        #expect(poller.problems == ["\(split[1].manifest.name.manifestKey): chain_mismatch: line 2 is at seq 3, where the chain's seq 2 was due; not used"])
        #expect(poller.archivesStored() == .listLogFolders)
        #expect(poller.logFoldersListed(["2023-11-13", "2023-11-14"].map(folder)) == .done)
        // 2023-11-13 is the newest day covered: 2023-11-14 is listed whole, and only the failed part's file is read.
        #expect(poller.start() == .list(logsAfter: folder("2023-11-14"), hintsAfter: "rooms/general/hints/0000000000000"))
        let files = split.flatMap { readPart($0).coveredFiles }
        let failed = readPart(split[1]).coveredFiles
        #expect(poller.listed(logs: files, hints: []) == .recall(keys: failed.map(\.key)))
        #expect(poller.recalled(seen: [], failures: [:]) == .read(failed))
    }

    @Test func `a part an earlier sync stored is not read again, and still covers its day`() {
        var poller = poller()
        _ = poller.startArchives()
        _ = poller.archivesListed(listing(day13 + day14))
        #expect(poller.archivesRecalled(seen: [day13[0].manifest.name.manifestKey]) == .readManifests((day13 + day14).map(manifestObject)))
        #expect(poller.manifestsRead(manifests(day13 + day14)) == .readArchives(day14.map(readPart)))
        poller.archiveRead(readPart(day14[0]))
        #expect(poller.archivesStored() == .listLogFolders)
        #expect(poller.logFoldersListed(["2023-11-13", "2023-11-14"].map(folder)) == .done)
    }

    @Test func `a hint to a file an archive covers leads nowhere`() {
        var poller = poller()
        _ = poller.startArchives()
        _ = poller.archivesListed(listing(day14))
        _ = poller.archivesRecalled(seen: [])
        _ = poller.manifestsRead(manifests(day14))
        poller.archiveRead(readPart(day14[0]))
        _ = poller.archivesStored()
        _ = poller.logFoldersListed([])
        let pointer = ObjectInfo(key: "rooms/general/hints/1700100000000_bob.0123456789ab.txt", size: 90)
        _ = poller.start()
        #expect(poller.listed(logs: [], hints: [pointer]) == .recall(keys: [pointer.key]))
        #expect(poller.recalled(seen: [], failures: [:]) == .readHint(key: pointer.key))
        #expect(poller.hintRead(.success(Array(readPart(day14[0]).coveredFiles[0].key.utf8))) == .read([]))
        #expect(poller.finish().hints == [BucketPoller.SeenHint(key: pointer.key, size: 90, problem: nil)])
        #expect(poller.problems.isEmpty)
    }

    @Test func `the archive of a day that ended less than an hour ago is not read`() {
        // 2023-11-15T00:59:59.999Z.
        var poller = poller(now: Self.day15 + 3_599_999)
        _ = poller.startArchives()
        #expect(poller.archivesListed(listing(day14)) == .done)
        #expect(poller.ignored == ["\(day14[0].manifest.name.manifestKey): the archive of a day that ended less than 60 min ago; not used"])
        #expect(poller.start() == .list(logsAfter: nil, hintsAfter: "rooms/general/hints/0000000000000"))
    }

    @Test func `only a sync of a room never listed reads archives, and only when the settings allow it`() {
        #expect(!poller(BucketPoller.Progress(logsCursorMs: 5, hintsCursorMs: 0, fullListingMs: 0)).readsArchives)
        #expect(!poller(BucketPoller.Progress(logsCursorMs: 0, hintsCursorMs: 0, fullListingMs: 5)).readsArchives)
        var settings = BucketPoller.Settings()
        settings.readsArchives = false
        #expect(!BucketPoller(roomID: Self.room, settings: settings, progress: .init(), hasGap: false, now: Self.now).readsArchives)
    }

    @Test func `manifests too large to read, unreadable, or whose body is not listed as they say, are reported and not used`() {
        var poller = poller()
        _ = poller.startArchives()
        let huge = ObjectInfo(key: day13[0].manifest.name.manifestKey, size: 5 << 20)
        _ = poller.archivesListed([bodyObject(day13[0]), huge, manifestObject(day14[0])])
        #expect(poller.archivesRecalled(seen: []) == .readManifests([manifestObject(day14[0])]))
        #expect(poller.manifestsRead([:]) == .done)
        #expect(
            poller.problems == [
                "\(huge.key): manifest_too_large: listed at 5242880 bytes; not read", "\(manifestObject(day14[0]).key): not read; not used",
            ])

        var other = self.poller()
        _ = other.startArchives()
        _ = other.archivesListed([manifestObject(day13[0]), ObjectInfo(key: day14[0].manifest.body.key, size: 3), manifestObject(day14[0])])
        _ = other.archivesRecalled(seen: [])
        var results = manifests(day13 + day14)
        results[day13[0].manifest.name.manifestKey] = .failure(BucketError(.transient, "503 Slow Down"))
        #expect(other.manifestsRead(results) == .done)
        #expect(
            other.problems == [
                "\(day13[0].manifest.name.manifestKey): 503 Slow Down; not used",
                "\(day14[0].manifest.name.manifestKey): body_size_mismatch: the body is listed at 3 bytes, the manifest says \(day14[0].body.count); not used",
            ])
    }
}
