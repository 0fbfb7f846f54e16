import ParleyBucket
import Testing

@Suite struct LayoutTests {
    @Test("A log file name round-trips and sorts by start time")
    func logNamesRoundTrip() throws {
        let name = LogFileName(roomID: "team", startMs: 1_726_315_200_000, endMs: 1_726_315_800_000, clientID: "alice.0a1b2c3d4e5f")
        #expect(name.key == "rooms/team/logs/2024-09-14/messages_1726315200000_1726315800000_alice.0a1b2c3d4e5f.jsonl")
        #expect(try LogFileName.parse(key: name.key, roomID: "team").get() == name)
        let later = LogFileName(roomID: "team", startMs: 1_726_315_200_001, endMs: 1_726_315_200_001, clientID: "a")
        #expect(name.key < later.key)
        let start = BucketLayout.logsStartAfter(roomID: "team", ms: name.startMs)
        #expect(start < name.key && start < later.key)
        let earlier = LogFileName(roomID: "team", startMs: name.startMs - 1, endMs: name.startMs, clientID: "zzz")
        #expect(earlier.key < start)
    }

    @Test("Dates are UTC calendar days, leap days included")
    func datesAreUTC() {
        #expect(BucketLayout.utcDate(0) == "1970-01-01")
        #expect(BucketLayout.utcDate(951_782_400_000) == "2000-02-29")
        #expect(BucketLayout.utcDate(951_868_799_999) == "2000-02-29")
        #expect(BucketLayout.utcDate(4_102_444_800_000) == "2100-01-01")
    }

    @Test(
        "Keys that are not log files are refused with a reason",
        arguments: [
            ("rooms/team/logs/README.txt", "not of the form"),
            ("rooms/team/logs/2024-09-14/", "not a .jsonl"),
            ("rooms/team/logs/2024-09-14/notes.jsonl", "does not start with messages_"),
            ("rooms/team/logs/2024-09-14/messages_1_x_a.jsonl", "no {start}_{end}"),
            ("rooms/team/logs/2024-09-14/messages_5_4_a.jsonl", "ends before it starts"),
            ("rooms/team/logs/2024-09-14/messages_1_2_..jsonl", "client id"),
            ("rooms/team/logs/2024-09-14/messages_1_2_a%2fb.jsonl", "client id"),
            ("rooms/team/logs/2024-09-14/messages_1_2_a\\b.jsonl", "client id"),
            ("rooms/team/logs/2024-9-14/messages_1_2_a.jsonl", "not a YYYY-MM-DD"),
            ("rooms/team/logs/../x/messages_1_2_a.jsonl", "not of the form"),
            ("rooms/team/logs/../messages_1_2_a.jsonl", "not a YYYY-MM-DD"),
            ("rooms/other/logs/2024-09-14/messages_1_2_a.jsonl", "not under"),
        ])
    func foreignKeysAreRefused(key: String, reason: String) {
        guard case .failure(let problem) = LogFileName.parse(key: key, roomID: "team") else {
            Issue.record("\(key) parsed as a log file")
            return
        }
        #expect(problem.reason.contains(reason))
    }

    @Test(arguments: ["2026-13-45", "2026-00-10", "2026-02-30", "2025-02-29", "2100-02-29", "2024-04-31", "2024-01-00"])
    func `a date folder that is not a calendar date is not a log file`(date: String) {
        guard case .failure(let problem) = LogFileName.parse(key: "rooms/team/logs/\(date)/messages_1_2_a.jsonl", roomID: "team") else {
            Issue.record("\(date) parsed as a date folder")
            return
        }
        #expect(problem.reason.contains("is not a YYYY-MM-DD date"))
    }

    @Test(arguments: ["2024-02-29", "2000-02-29", "2025-12-31", "1970-01-01"])
    func `a date folder that is a calendar date, leap days included, is one`(date: String) throws {
        #expect(try LogFileName.parse(key: "rooms/team/logs/\(date)/messages_1_2_a.jsonl", roomID: "team").get().dateFolder == date)
    }

    @Test("A name whose date folder disagrees with its start time parses but is flagged")
    func inconsistentDateIsFlagged() throws {
        let name = try LogFileName.parse(key: "rooms/team/logs/2030-01-01/messages_1726315200000_1726315200000_a.jsonl", roomID: "team").get()
        #expect(!name.isDateConsistent)
    }

    @Test(
        "Object keys that could escape a folder or change meaning in a URL are refused",
        arguments: ["", "a/../b", "./a", "a//b", "/a", "a/", "a\\b", "a%2fb", "a\u{0}b", "a\nb", String(repeating: "k", count: 1025)])
    func hostileKeysAreRefused(key: String) {
        #expect(ObjectKey.problem(with: key) != nil)
    }

    @Test("Hint keys carry the upload time")
    func hintKeys() {
        let key = BucketLayout.hintKey(roomID: "team", uploadMs: 1_726_315_200_000, clientID: "bob.1")
        #expect(BucketLayout.hintUploadMs(key, roomID: "team") == 1_726_315_200_000)
        #expect(BucketLayout.hintUploadMs("rooms/team/hints/x_bob.txt", roomID: "team") == nil)
    }

    @Test("Bucket URLs are parsed and checked")
    func bucketURLs() throws {
        #expect(try BucketURL("file:///tmp/b/") == .folder(path: "/tmp/b"))
        #expect(try BucketURL("s3://chat-bucket/team/x") == .s3(bucket: "chat-bucket", prefix: "team/x/", options: [:]))
        #expect(try BucketURL("s3://chat-bucket?region=eu-west-1").text == "s3://chat-bucket/?region=eu-west-1")
        for bad in ["file://relative", "file:///a/../b", "s3://Bad_Bucket", "s3://ok-bucket/a/../b", "s3://ok-bucket?colour=red", "http://x"] {
            #expect(throws: BucketError.self, "\(bad)") { try BucketURL(bad) }
        }
    }

    @Test("gzip round-trips, and a stream that inflates past the limit is refused")
    func gzip() throws {
        let text = Array(String(repeating: "{\"a\":1}\n", count: 10_000).utf8)
        let packed = Gzip.compress(text)
        #expect(Gzip.isGzip(packed) && packed.count < text.count / 10)
        #expect(try Gzip.decompress(packed, maxBytes: text.count) == text)
        #expect(throws: BucketError.self) { try Gzip.decompress(packed, maxBytes: text.count - 1) }
        #expect(throws: BucketError.self) { try Gzip.decompress(Array(packed.dropLast(10)), maxBytes: text.count) }
    }
}
