import Foundation
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// Wrong or hostile files and folders given to the `parley` executable.
@Suite(.serialized) struct HostileInputCLITests {
    func lines(_ text: String) -> [Substring] { text.split(separator: "\n") }

    func rejectedCount(_ node: ParleyCommand) throws -> Int {
        let listed = try node.run(["rejected", "--limit", "1000000", "--json"])
        try #require(listed.status == 0, "\(listed.stderr)")
        return try JSONParser(maxBytes: 1 << 28).parse(Array(listed.stdout.utf8)).array.count
    }

    @Test func `importing a file that is not Parley events stops after its first lines with one error`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        try #require(try node.run(["init", "--user", "erin"]).status == 0)
        // Half a million short lines that are not JSON: what a binary or a log file of another program looks like.
        let path = directory.file("photo.bin")
        try Data(String(repeating: "\u{1}\u{7F}ELF garbage\n", count: 500_000).utf8).write(to: URL(fileURLWithPath: path))
        let result = try node.run(["import", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("does not look like Parley events: its first 100 lines are all invalid"), "\(result.stderr.prefix(2000))")
        #expect(lines(result.stderr).count <= 12, "\(lines(result.stderr).count) lines of errors")
        #expect(try rejectedCount(node) <= 1)
        #expect(try node.run(["room", "list"]).stdout.isEmpty)
    }

    @Test func `verifying a file that is not Parley events reports it as one problem`() throws {
        let result = try ParleyCommand.run(["verify"], input: Array(String(repeating: "\u{1}\u{7F}ELF garbage\n", count: 500_000).utf8))
        #expect(result.status == 1)
        #expect(
            lines(result.stdout) == [
                "not Parley events: its first 100 lines are all invalid (line 1: invalid event: invalid JSON: unexpected byte 0x1 where a value was expected (at byte 0)); not read further",
                "FAILED: 1 problem(s) in 100 lines",
            ], "\(result.stdout.prefix(2000))")
    }

    @Test func `an import summarizes repeated reasons and keeps at most 100 invalid lines in the rejected log`() throws {
        let nodes = try TwoNodes()
        try nodes.shareRoom("r")
        let events = try nodes.alice.run(["events", "r"]).stdoutBytes
        let fresh = ParleyCommand(home: nodes.directory.file("carol"))
        try #require(try fresh.run(["init", "--user", "carol"]).status == 0)
        let good = lines(String(decoding: events, as: UTF8.self)).count
        let result = try fresh.run(["import"], input: events + Array(String(repeating: "{\"not\":\"an event\"}\n", count: 2_000).utf8))
        #expect(result.status == 1)
        let errors = lines(result.stderr)
        #expect(errors.count == 11, "\(errors.prefix(30))")
        #expect(errors.first?.hasPrefix("line \(good + 1): rejected: ") == true, "\(errors.prefix(3))")
        #expect(errors.last?.hasPrefix("2,000 lines: rejected …; first 10 shown") == true, "\(errors.suffix(3))")
        #expect(result.stdout.contains("\(good) accepted") && result.stdout.contains("2000 rejected"), "\(result.stdout)")
        let logged = try rejectedCount(fresh)
        #expect(logged == 101, "\(logged) rejected entries")
        let log = try fresh.run(["rejected", "--limit", "1"]).stdout
        #expect(log.contains("1,900 more invalid lines of this input were refused; not kept here one by one"), "\(log)")
    }

    @Test func `parley rejected --clear empties the rejected-events log`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        try #require(try node.run(["init", "--user", "erin"]).status == 0)
        _ = try node.run(["import"], input: Array("one\ntwo\n".utf8))
        #expect(try rejectedCount(node) == 2)
        let cleared = try node.run(["rejected", "--clear"])
        #expect(cleared.status == 0, "\(cleared.stderr)")
        #expect(cleared.stdout.contains("Removed 2 entries from the rejected-events log."), "\(cleared.stdout)")
        #expect(try rejectedCount(node) == 0)
    }

    @Test func `import and verify flag an event dated far ahead of this device's clock and accept it`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        try #require(try node.run(["init", "--user", "erin"]).status == 0)
        var mallory = TestDevice("mallory")
        let tomorrow = Int64(Date().timeIntervalSince1970 * 1000) + 2 * 86_400_000
        var events = mallory.create("future", at: tomorrow)
        events.append(mallory.message("future", "hello from the day after tomorrow", at: tomorrow))
        let input: [UInt8] = events.flatMap { $0.wire + [0x0A] }
        let imported = try node.run(["import"], input: input)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("3 accepted"), "\(imported.stdout)")
        for line in 1...3 { #expect(imported.stderr.contains("line \(line): warning: dated 2 days ahead of this device's clock"), "\(imported.stderr)") }
        let verified = try ParleyCommand.run(["verify"], input: input)
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.contains("warning: line 1: dated 2 days ahead of this device's clock"), "\(verified.stdout)")
    }

    @Test func `a folder bucket that does not exist is an error naming it, and room create makes one only where asked`() throws {
        let directory = TemporaryDirectory()
        let node = ParleyCommand(home: directory.file("n"))
        try #require(try node.run(["init", "--user", "erin"]).status == 0)
        let missing = directory.file("no/such/dir")

        let audit = try ParleyCommand.run(["bucket", "verify", "file://\(missing)"])
        #expect(audit.status == 1)
        #expect(audit.stderr.contains(missing) && audit.stderr.contains("does not exist"), "\(audit.stdout)\(audit.stderr)")

        let refused = try node.run(["room", "create", "r", "--bucket", "file://\(missing)"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains(directory.file("no/such")) && refused.stderr.contains("--create-bucket"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("no")))
        #expect(try node.run(["room", "list"]).stdout.isEmpty)

        let beside = try node.run(["room", "create", "s", "--bucket", "file://\(directory.file("beside"))"])
        #expect(beside.status == 0, "\(beside.stderr)")
        let created = try node.run(["room", "create", "r", "--bucket", "file://\(missing)", "--create-bucket"])
        #expect(created.status == 0, "\(created.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(missing)/rooms/r/metadata.json"))
        let s3 = try node.run(["room", "create", "t", "--bucket", "s3://some-bucket/p", "--create-bucket"])
        #expect(s3.status != 0 && s3.stderr.contains("--create-bucket"), "\(s3.stderr)")

        // The bucket folder goes away (a disk not mounted, a folder deleted): syncing says so instead of reading nothing.
        try FileManager.default.removeItem(atPath: directory.file("no"))
        let synced = try node.run(["sync", "r"])
        #expect(synced.status == 1)
        #expect(synced.stderr.contains(missing) && synced.stderr.contains("does not exist"), "\(synced.stdout)\(synced.stderr)")
    }

    @Test func `a gzip of 64 MiB of junk lines costs one sync little time, memory, output and storage`() throws {
        let nodes = try TwoNodes()
        let bucket = nodes.directory.file("bucket")
        try #require(try nodes.alice.run(["room", "create", "team", "--bucket", "file://\(bucket)"]).status == 0)
        let junk = Array(String(repeating: "x\n", count: 32 << 20).utf8)
        let body = Gzip.compress(junk)
        let name = LogFileName(roomID: "team", startMs: 1_790_000_000_000, endMs: 1_790_000_000_000, clientID: "mallory", gzip: true)
        try FileManager.default.createDirectory(atPath: "\(bucket)/\(BucketLayout.logsPrefix("team"))\(name.dateFolder)", withIntermediateDirectories: true)
        _ = try body.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: "\(bucket)/\(name.key)")) }
        let started = Date()
        let synced = try nodes.alice.run(["sync", "team"], measuringMemory: true)
        let seconds = Date().timeIntervalSince(started)
        #expect(synced.status == 0, "\(synced.stderr)")
        #expect(synced.stdout.utf8.count < 2_000, "\(synced.stdout.utf8.count) bytes of output")
        #expect(synced.stdout.contains("not Parley events"), "\(synced.stdout)")
        #expect(try #require(synced.maxRSSKilobytes) < 250_000, "peak RSS \(synced.maxRSSKilobytes ?? 0) kB")
        #expect(seconds < 20, "\(seconds) s")
        #expect(try rejectedCount(nodes.alice) <= 1)
    }
}
