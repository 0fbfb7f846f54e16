import ParleyBucket
import Testing

/// One sync's decisions, as transcripts: each input the driver would hand over, and the action expected back.
@Suite struct BucketPollerTests {
    /// 2023-11-14T22:13:20Z.
    static let now: Int64 = 1_700_000_000_000
    let room = "general"

    /// A log file of room "general" starting at `startMs` (all within 2023-11-14), written out by hand.
    func log(_ startMs: Int64, size: Int64 = 100, client: String = "bob.0123456789ab") -> ObjectInfo {
        ObjectInfo(key: "rooms/general/logs/2023-11-14/messages_\(startMs)_\(startMs + 10)_\(client).jsonl", size: size)
    }

    func hint(_ uploadMs: Int64) -> ObjectInfo {
        ObjectInfo(key: "rooms/general/hints/\(uploadMs)_bob.0123456789ab.txt", size: 80)
    }

    func poller(_ progress: BucketPoller.Progress = .init(), hasGap: Bool = false, settings: BucketPoller.Settings = .init()) -> BucketPoller {
        BucketPoller(roomID: room, settings: settings, progress: progress, hasGap: hasGap, now: Self.now)
    }

    @Test func `a first sync lists the whole room, reads what it has not seen, and moves the cursor to the newest name`() throws {
        var poller = poller()
        #expect(poller.start() == .list(logsAfter: nil, hintsAfter: "rooms/general/hints/0000000000000"))
        let (a, b, c) = (log(1_699_999_000_000), log(1_699_999_500_000), log(1_699_999_900_000))
        #expect(poller.listed(logs: [a, b, c], hints: []) == .recall(keys: [a.key, b.key, c.key]))
        #expect(poller.recalled(seen: [b.key], failures: [:]) == .read([a, c]))
        poller.fileRead(a, name: try LogFileName.parse(key: a.key, roomID: room).get())
        poller.fileRead(c, name: try LogFileName.parse(key: c.key, roomID: room).get())
        let outcome = poller.finish()
        // b was read before: the cursor still follows it, and c's start is the newest.
        #expect(outcome.progress == BucketPoller.Progress(logsCursorMs: 1_699_999_900_000, hintsCursorMs: 0, fullListingMs: Self.now))
        #expect(outcome.hints.isEmpty && outcome.vanished.isEmpty)
    }

    @Test func `files are read in the order they were written: by time, then a writer's renamed files in number order`() throws {
        var poller = poller()
        _ = poller.start()
        let base = "bob.0123456789ab"
        // One millisecond's burst: the writer renamed each file after the first; key order puts .10 before .2, and
        // both before the first file.
        let burst = ["", ".1", ".10", ".2"].map { log(1_699_999_000_000, client: base + $0) }
        let earlier = log(1_699_998_000_000, client: "carol.0123456789ab")
        let listed = [earlier, burst[1], burst[2], burst[3], burst[0]]
        #expect(listed.map(\.key) == listed.map(\.key).sorted())
        _ = poller.listed(logs: listed, hints: [])
        #expect(poller.recalled(seen: [], failures: [:]) == .read([earlier, burst[0], burst[1], burst[3], burst[2]]))
    }

    @Test func `progress kept as a cursor in the store reads back the same, never moves back when merged, and starts over when unreadable`() {
        let progress = BucketPoller.Progress(logsCursorMs: 1_700_000_000_000, hintsCursorMs: 1_700_000_000_500, fullListingMs: 1_699_999_999_000)
        #expect(String(decoding: progress.cursor, as: UTF8.self) == #"{"full_listing_ms":1699999999000,"hints_ms":1700000000500,"logs_ms":1700000000000}"#)
        #expect(BucketPoller.Progress(cursor: progress.cursor) == progress)
        let other = BucketPoller.Progress(logsCursorMs: 1_800_000_000_000, hintsCursorMs: 5, fullListingMs: 0)
        #expect(
            progress.merged(with: other)
                == BucketPoller.Progress(logsCursorMs: 1_800_000_000_000, hintsCursorMs: 1_700_000_000_500, fullListingMs: 1_699_999_999_000))
        for junk in [[], Array("not json".utf8), Array(#"{"logs_ms":"soon"}"#.utf8), [UInt8](repeating: 0x5B, count: 5_000)] as [[UInt8]] {
            #expect(BucketPoller.Progress(cursor: junk) == BucketPoller.Progress())
        }
    }

    @Test func `a later sync lists from two minutes before the cursor and records no full listing`() {
        let progress = BucketPoller.Progress(logsCursorMs: 1_699_999_900_000, hintsCursorMs: 1_699_999_800_000, fullListingMs: 1_699_990_000_000)
        var poller = poller(progress)
        #expect(!poller.listsEverything)
        #expect(
            poller.start()
                == .list(
                    logsAfter: "rooms/general/logs/2023-11-14/messages_1699999780000", hintsAfter: "rooms/general/hints/1699999680000"))
        #expect(poller.listed(logs: [], hints: []) == .recall(keys: []))
        #expect(poller.recalled(seen: [], failures: [:]) == .read([]))
        #expect(poller.finish().progress == progress)
    }

    @Test func `a chain gap lists the whole room again, but not more often than the setting allows`() {
        var settings = BucketPoller.Settings()
        settings.gapListingEveryMs = 60_000
        let recent = BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: 0, fullListingMs: Self.now - 59_999)
        #expect(!poller(recent, hasGap: true, settings: settings).listsEverything)
        let due = BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: 0, fullListingMs: Self.now - 60_000)
        var gapped = poller(due, hasGap: true, settings: settings)
        #expect(gapped.listsEverything)
        #expect(gapped.start() == .list(logsAfter: nil, hintsAfter: "rooms/general/hints/0000000000000"))
        #expect(!poller(due, hasGap: false, settings: settings).listsEverything)
    }

    @Test func `a name dated after the local clock moves the cursor only to the local clock`() {
        var poller = poller()
        let future = log(1_800_000_000_000)
        let futureKey = ObjectInfo(key: future.key.replacingOccurrences(of: "2023-11-14", with: "2027-01-15"), size: 100)
        _ = poller.start()
        _ = poller.listed(logs: [futureKey], hints: [])
        #expect(poller.recalled(seen: [futureKey.key], failures: [:]) == .read([]))
        #expect(poller.finish().progress.logsCursorMs == Self.now)
    }

    @Test func `a file that failed before is skipped until its wait is over, then looked up by name wherever the listing started`() {
        var poller = poller(BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: Self.now, fullListingMs: 1))
        let waiting = log(1_699_999_990_000)
        let due = log(1_699_000_000_000)
        let gone = log(1_699_000_100_000)
        let failures = [
            waiting.key: BucketPoller.ReadFailure(attempts: 1, firstMs: Self.now - 500, nextMs: Self.now + 1_500),
            due.key: BucketPoller.ReadFailure(attempts: 3, firstMs: Self.now - 9_000, nextMs: Self.now),
            gone.key: BucketPoller.ReadFailure(attempts: 1, firstMs: Self.now - 9_000, nextMs: Self.now - 1),
        ]
        _ = poller.start()
        _ = poller.listed(logs: [waiting], hints: [])
        #expect(poller.recalled(seen: [], failures: failures) == .look(key: due.key))
        #expect(poller.looked(.success(due)) == .look(key: gone.key))
        #expect(poller.looked(.success(nil)) == .read([due]))
        #expect(poller.ignored == ["\(waiting.key): failed before; read again in 2 s"])
        #expect(poller.problems == ["\(gone.key): failed before, and is no longer in the bucket"])
        #expect(poller.finish().vanished == [gone.key])
    }

    @Test func `a hint leads to a late file the listing did not reach, and is recorded once the sync ends`() {
        var poller = poller(BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: Self.now - 10_000, fullListingMs: 1))
        let late = log(1_699_000_000_000)
        let pointer = hint(1_699_999_995_000)
        _ = poller.start()
        #expect(poller.listed(logs: [], hints: [pointer]) == .recall(keys: [pointer.key]))
        #expect(poller.recalled(seen: [], failures: [:]) == .readHint(key: pointer.key))
        #expect(poller.hintRead(.success(Array(late.key.utf8))) == .recall(keys: [late.key]))
        #expect(poller.recalled(seen: [], failures: [:]) == .look(key: late.key))
        #expect(poller.looked(.success(late)) == .read([late]))
        let outcome = poller.finish()
        #expect(outcome.hints == [BucketPoller.SeenHint(key: pointer.key, size: pointer.size, problem: nil)])
        #expect(outcome.progress.hintsCursorMs == 1_699_999_995_000)
    }

    @Test func `a hint to a file read before costs no lookup`() {
        var poller = poller(BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: Self.now, fullListingMs: 1))
        let pointer = hint(1_699_999_995_000)
        _ = poller.start()
        _ = poller.listed(logs: [], hints: [pointer])
        _ = poller.recalled(seen: [], failures: [:])
        let old = log(1_600_000_000_000)
        #expect(poller.hintRead(.success(Array(old.key.utf8))) == .recall(keys: [old.key]))
        #expect(poller.recalled(seen: [old.key], failures: [:]) == .read([]))
        #expect(poller.problems.isEmpty)
    }

    @Test(arguments: [
        ("rooms/other/logs/2023-11-14/messages_1699999000000_1699999000010_bob.0123456789ab.jsonl", "the hint does not name a log file of this room"),
        ("../../etc/passwd", "the hint does not name a log file of this room"),
    ])
    func `a hint naming something other than a log file of this room is a problem and leads nowhere`(target: String, problem: String) {
        var poller = poller(BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: Self.now, fullListingMs: 1))
        let pointer = hint(1_699_999_995_000)
        _ = poller.start()
        _ = poller.listed(logs: [], hints: [pointer])
        _ = poller.recalled(seen: [], failures: [:])
        #expect(poller.hintRead(.success(Array(target.utf8))) == .read([]))
        #expect(poller.problems == ["\(pointer.key): \(problem)"])
        #expect(poller.finish().hints == [BucketPoller.SeenHint(key: pointer.key, size: pointer.size, problem: problem)])
    }

    @Test func `a hint to a file that does not exist, or that cannot be read, is a problem recorded with the hint`() {
        var poller = poller(BucketPoller.Progress(logsCursorMs: Self.now, hintsCursorMs: Self.now, fullListingMs: 1))
        let (first, second) = (hint(1_699_999_995_000), hint(1_699_999_996_000))
        let target = log(1_699_000_000_000)
        _ = poller.start()
        _ = poller.listed(logs: [], hints: [first, second])
        #expect(poller.recalled(seen: [], failures: [:]) == .readHint(key: first.key))
        #expect(poller.hintRead(.success(Array(target.key.utf8))) == .recall(keys: [target.key]))
        #expect(poller.recalled(seen: [], failures: [:]) == .look(key: target.key))
        #expect(poller.looked(.success(nil)) == .readHint(key: second.key))
        #expect(poller.hintRead(.failure(BucketError(.transient, "503 Slow Down"))) == .read([]))
        #expect(poller.problems == ["\(first.key): the hint names \(target.key), which does not exist", "\(second.key): 503 Slow Down"])
    }

    @Test func `an object is downloaded only when its name is a log file of the room and its size is within the limit`() throws {
        var settings = BucketPoller.Settings()
        settings.maxObjectBytes = 1_000
        let poller = poller(settings: settings)
        let file = log(1_699_999_000_000, size: 1_000)
        #expect(poller.admission(of: file) == .download(try LogFileName.parse(key: file.key, roomID: room).get()))
        #expect(poller.admission(of: log(1_699_999_000_000, size: 0)) == .ignore("empty"))
        #expect(poller.admission(of: log(1_699_999_000_000, size: 1_001)) == .fail(BucketError(.tooLarge, "1001 bytes, over the limit of 1000; not read")))
        guard case .ignore = poller.admission(of: ObjectInfo(key: "rooms/general/logs/notes.txt", size: 5)) else {
            Issue.record("a stray object is not ignored")
            return
        }
    }

    @Test func `a file that keeps failing for a passing reason is retried after one second, then twice as long each time, and given up on after a day`() {
        let file = log(1_699_999_000_000)
        let transient = BucketError(.transient, "503 Slow Down")
        var failure: BucketPoller.ReadFailure?
        var waits: [Int64] = []
        for attempt in 0..<14 {
            let now = Self.now + Int64(attempt) * 10_000_000
            var poller = BucketPoller(roomID: room, settings: .init(), progress: .init(), hasGap: false, now: now)
            _ = poller.start()
            _ = poller.listed(logs: [file], hints: [])
            _ = poller.recalled(seen: [], failures: failure.map { [file.key: $0] } ?? [:])
            switch poller.fileFailed(file, error: transient) {
            case .retry(let next):
                waits.append(next.nextMs - now)
                failure = next
            case .record(let problem):
                #expect(attempt == 9, "given up on at attempt \(attempt)")
                #expect(problem == "503 Slow Down; given up after failing for 90000 s")
                #expect(waits == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000])
                return
            }
        }
        Issue.record("never given up on")
    }

    @Test func `a failure that will not pass is recorded at once`() {
        var poller = poller()
        let file = log(1_699_999_000_000)
        _ = poller.start()
        _ = poller.listed(logs: [file], hints: [])
        _ = poller.recalled(seen: [], failures: [:])
        #expect(poller.fileFailed(file, error: BucketError(.accessDenied, "Access denied")) == .record(problem: "Access denied"))
        #expect(poller.problems == ["\(file.key): Access denied"])
    }
}
