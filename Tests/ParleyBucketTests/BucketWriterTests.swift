import ParleyBucket
import Testing

/// Writing this device's events: which go in a file and its name, then each write's outcome and the action expected.
@Suite struct BucketWriterTests {
    let client = "alice.0123456789ab"

    func pending(_ count: Int, bytes: Int = 9, from startMs: Int64 = 1_700_000_000_000) -> [BucketWriter.PendingEvent] {
        (0..<count).map {
            BucketWriter.PendingEvent(seq: Int64($0 + 1), timestampMs: startMs + Int64($0), wire: Array(repeating: 0x61 + UInt8($0 % 26), count: bytes))
        }
    }

    func settings(maxEvents: Int = 10_000, maxBytes: Int = 8 << 20, gzip: Bool = false) -> BucketWriter.Settings {
        var settings = BucketWriter.Settings()
        settings.maxEventsPerFile = maxEvents
        settings.maxFileBytes = maxBytes
        settings.gzip = gzip
        return settings
    }

    @Test func `a file holds the pending events up to the byte limit, named by its first and last event's times`() throws {
        // Lines of 10 bytes (9 and LF): three fit in 30 bytes, a fourth would not.
        let file = try #require(
            BucketWriter.nextFile(of: pending(5), roomID: "team", clientID: client, settings: settings(maxBytes: 30), isTaken: { _ in false }))
        #expect(file.events == 3)
        #expect(file.content == Array("aaaaaaaaa\nbbbbbbbbb\nccccccccc\n".utf8))
        #expect(file.key == "rooms/team/logs/2023-11-14/messages_1700000000000_1700000000002_alice.0123456789ab.jsonl")
    }

    @Test func `an event larger than the byte limit still gets a file of its own`() throws {
        let file = try #require(
            BucketWriter.nextFile(of: pending(2, bytes: 100), roomID: "team", clientID: client, settings: settings(maxBytes: 30), isTaken: { _ in false }))
        #expect(file.events == 1 && file.content.count == 101)
    }

    @Test func `a file holds at most the event limit, gzip files are named so, and nothing pending makes no file`() throws {
        let file = try #require(
            BucketWriter.nextFile(of: pending(5), roomID: "team", clientID: client, settings: settings(maxEvents: 2, gzip: true), isTaken: { _ in false }))
        #expect(file.events == 2)
        #expect(file.key.hasSuffix("_alice.0123456789ab.jsonl.gz"))
        #expect(BucketWriter.nextFile(of: [], roomID: "team", clientID: client, settings: settings(), isTaken: { _ in false }) == nil)
    }

    @Test func `a name an earlier upload of the room took gets the next numbered client id`() throws {
        let base = "rooms/team/logs/2023-11-14/messages_1700000000000_1700000000000_alice.0123456789ab"
        let taken: Set = [base + ".jsonl", base + ".1.jsonl"]
        let file = try #require(BucketWriter.nextFile(of: pending(1), roomID: "team", clientID: client, settings: settings(), isTaken: { taken.contains($0) }))
        #expect(file.key == base + ".2.jsonl")
    }

    @Test func `a file written at once is confirmed, and one found identical from an earlier attempt too`() {
        let key = "rooms/team/logs/2023-11-14/messages_1700000000000_1700000000000_alice.0123456789ab.jsonl"
        for outcome in [PutOutcome.created, .alreadyIdentical] {
            var writer = BucketWriter(key: key, roomID: "team", firstTimestampMs: 1_700_000_000_000, clientID: client, settings: settings())
            #expect(writer.start() == .write(key: key))
            #expect(writer.written(outcome, now: 1_700_000_030_000) == .confirm(key: key))
        }
    }

    @Test func `a name another object holds is renamed until the store and the bucket both have it free, and a late file gets a hint`() {
        let base = "rooms/team/logs/2023-11-14/messages_1700000000000_1700000000000_alice.0123456789ab"
        var writer = BucketWriter(key: base + ".jsonl", roomID: "team", firstTimestampMs: 1_700_000_000_000, clientID: client, settings: settings())
        #expect(writer.start() == .write(key: base + ".jsonl"))
        #expect(writer.written(.conflict, now: 1_700_000_040_000) == .rename(key: base + ".1.jsonl"))
        // Another upload of this room already has that name.
        #expect(writer.renamed(false) == .rename(key: base + ".2.jsonl"))
        #expect(writer.renamed(true) == .write(key: base + ".2.jsonl"))
        // 40 s after its first event: later than readers' listings start.
        #expect(
            writer.written(.created, now: 1_700_000_040_000)
                == .writeHint(key: "rooms/team/hints/1700000040000_alice.0123456789ab.txt", body: Array((base + ".2.jsonl").utf8)))
        #expect(writer.hintWritten() == .confirm(key: base + ".2.jsonl"))
    }

    @Test func `a name that stays taken is given up on after a bounded number of tries`() {
        let key = "rooms/team/logs/2023-11-14/messages_1700000000000_1700000000000_alice.0123456789ab.jsonl"
        var writer = BucketWriter(key: key, roomID: "team", firstTimestampMs: 1_700_000_000_000, clientID: client, settings: settings())
        var action = writer.start()
        var writes = 0
        while case .write = action {
            writes += 1
            action = writer.written(.conflict, now: 1_700_000_000_000)
            if case .rename = action { action = writer.renamed(true) }
        }
        #expect(action == .fail("Cannot find a free name for \(key)."))
        #expect(writes == BucketWriter.maxRenames)
    }
}
