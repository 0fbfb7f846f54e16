import Foundation
import ParleyBucket
@_spi(Tools) import ParleyClient
import ParleyCore

/// A new member joins a folder-bucket room of `events` events written in files of `perFile` (`parley room join`), against
/// `parley import` of the same events as one file: wall time and peak memory of each, best of `rounds`.
func catchUpBenchmark(workdir: String, parley: String, events: Int, perFile: Int, rounds: Int = 3) {
    let directory = "\(workdir)/catchup-\(events)-\(perFile)"
    try? FileManager.default.removeItem(atPath: directory)
    try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let url = try! BucketURL("file://\(directory)/bucket")
    var settings = BucketSettings()
    settings.maxEventsPerFile = perFile
    let writer = BucketClient(node: benchNode(directory, "writer"), settings: settings)
    _ = blocking { try await writer.createRoom("bench", bucket: url, createBucket: true) }
    // One reader a round (a join writes the reader's join event into the bucket: a device joins once), each invited
    // before the messages.
    let readerHomes = (0..<rounds).map { "\(directory)/reader-\($0)" }
    for (index, home) in readerHomes.enumerated() {
        _ = try! capture(parley, home: home, ["init", "--user", "reader\(index)"])
        let key = try! JSONParser().parse(Array(try! capture(parley, home: home, ["whoami", "--json"]).utf8).dropLast())["signing_key"]!.stringValue!
        _ = try! writer.node.invite("bench", userID: "reader\(index)", key: key)
    }
    for start in stride(from: 0, to: events, by: 1000) {
        _ = try! writer.node.publish(
            roomID: "bench", (start..<min(events, start + 1000)).map { OutgoingEvent.message("catch-up \($0) " + kibibyteText.prefix(900)) })
        _ = blocking { try await writer.flush("bench") }
    }
    let code = try! writer.inviteCode("bench")!.text
    let files = (FileManager.default.enumerator(atPath: "\(directory)/bucket")?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".jsonl") }.count
    // The same events as one JSONL file, for the import.
    let exported = "\(directory)/room.jsonl"
    var lines: [UInt8] = []
    try! writer.node.forEachEvent("bench") { wire in lines += wire + [0x0A] }
    FileManager.default.createFile(atPath: exported, contents: Data(lines))

    var joinSeconds = Double.infinity
    var importSeconds = Double.infinity
    var joinPeak = 0
    var importPeak = 0
    for round in 0..<rounds {
        let joiner = readerHomes[round]
        let importer = "\(directory)/importer-\(round)"
        _ = try! capture(parley, home: importer, ["init", "--user", "importer\(round)"])
        let join = runProcess("/usr/bin/time", ["-f", "%M", "-o", "\(joiner).rss", parley, "--home", joiner, "room", "join", code])
        precondition(join.status == 0, "parley room join failed")
        joinSeconds = min(joinSeconds, join.seconds)
        joinPeak = max(joinPeak, Int((try! String(contentsOfFile: "\(joiner).rss", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!)
        let imported = runProcess("/usr/bin/time", ["-f", "%M", "-o", "\(importer).rss", parley, "--home", importer, "import", exported])
        precondition(imported.status == 0, "parley import failed")
        importSeconds = min(importSeconds, imported.seconds)
        importPeak = max(importPeak, Int((try! String(contentsOfFile: "\(importer).rss", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!)
    }
    let label = "\(events) events in \(files) files of \(perFile)"
    record("parley room join of a folder-bucket room, \(label) (best of \(rounds))", joinSeconds, "s")
    record("parley import of the same events as one file (best of \(rounds))", importSeconds, "s")
    record("join ÷ import, \(label)", joinSeconds / importSeconds, "×", target: "≤ 1.5×", met: joinSeconds / importSeconds <= 1.5)
    record("peak RSS of that join", Double(joinPeak) / 1024, "MiB", target: "≤ 64 MiB", met: joinPeak <= 64 * 1024)
    record("peak RSS of that import", Double(importPeak) / 1024, "MiB")
}

/// A clock the history's writer moves by hand, so its files fall on past days.
final class BenchClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 0
    var ms: Int64 {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

/// A new member joins a room of `days` past days of `filesPerDay` files of `perFile` events (and a few files of today),
/// without archives and then with every past day archived, on a folder bucket and, when the S3 test server runs
/// (`scripts/s3-test-servers`), on moto: wall time and peak RSS of `parley room join`, and the LIST and GET requests
/// of the same join in process (docs/PROTOCOL.md §13.9.5).
func archivedCatchUpBenchmark(workdir: String, parley: String, days: Int, filesPerDay: Int, perFile: Int) {
    let environment = ProcessInfo.processInfo.environment
    var buckets: [(label: String, url: (String) -> BucketURL)] = [("folder", { try! BucketURL("file://\($0)/bucket") })]
    if let endpoint = environment["PARLEY_TEST_S3_ENDPOINT"] {
        setenv("AWS_ACCESS_KEY_ID", environment["PARLEY_TEST_S3_KEY_ID"] ?? "x", 1)
        setenv("AWS_SECRET_ACCESS_KEY", environment["PARLEY_TEST_S3_SECRET"] ?? "x", 1)
        buckets.append(("moto", { _ in try! BucketURL("s3://parley-test/archives-\(getpid())/?endpoint=\(endpoint)") }))
    } else {
        print("No S3 server (PARLEY_TEST_S3_ENDPOINT); the archived catch-up runs on a folder bucket only.")
    }
    for (label, makeURL) in buckets {
        let directory = "\(workdir)/catchup-archives-\(label)"
        try? FileManager.default.removeItem(atPath: directory)
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let url = makeURL(directory)
        let clock = BenchClock()
        let dayMs: Int64 = 86_400_000
        let today = Node.systemClock() / dayMs * dayMs
        clock.ms = today - Int64(days + 1) * dayMs + 3_600_000
        let home = ParleyHome(path: "\(directory)/writer")
        _ = try! Identity.create(userID: "writer", home: home)
        var settings = BucketSettings()
        settings.maxEventsPerFile = perFile
        let writer = BucketClient(node: try! Node(home: home, clock: { clock.ms }), settings: settings)
        _ = blocking { try await writer.createRoom("bench", bucket: url, createBucket: true) }
        // Four readers: a `parley room join` and one in process (to count its requests), without archives and with.
        let readers = ["without", "with", "counted-without", "counted-with"]
        for reader in readers {
            _ = try! capture(parley, home: "\(directory)/\(reader)", ["init", "--user", reader])
            let key = try! JSONParser().parse(Array(try! capture(parley, home: "\(directory)/\(reader)", ["whoami", "--json"]).utf8).dropLast())[
                "signing_key"]!.stringValue!
            _ = try! writer.node.invite("bench", userID: reader, key: key)
        }
        // The invites in files of their own, so each file after them is one burst.
        _ = blocking { try await writer.flush("bench") }
        let written = now()
        for day in 0..<days {
            clock.ms = today - Int64(days + 1 - day) * dayMs + 7_200_000
            // One burst per file, as a device that flushes every few events writes them: the events of one burst
            // share a millisecond, and a day whose files split a burst is not archived (docs/PROTOCOL.md §13.9.7).
            for file in 0..<filesPerDay {
                _ = try! writer.node.publish(roomID: "bench", (0..<perFile).map { OutgoingEvent.message("day \(day), file \(file), message \($0)") })
            }
            _ = blocking { try await writer.flush("bench") }
        }
        // Today's files, after the newest archive: read as log files in both cases.
        clock.ms = Node.systemClock()
        for file in 0..<20 { _ = try! writer.node.publish(roomID: "bench", (0..<perFile).map { OutgoingEvent.message("today, file \(file), message \($0)") }) }
        _ = blocking { try await writer.flush("bench") }
        print("\(label): wrote \(days) days of \(filesPerDay) files of \(perFile) events in \(Int(now() - written)) s")
        let code = try! writer.inviteCode("bench")!

        func join(_ reader: String) -> (seconds: Double, peakKiB: Int) {
            let readerHome = "\(directory)/\(reader)"
            let joined = runProcess("/usr/bin/time", ["-f", "%M", "-o", "\(readerHome).rss", parley, "--home", readerHome, "room", "join", code.text])
            precondition(joined.status == 0, "parley room join failed")
            let peak = Int((try! String(contentsOfFile: "\(readerHome).rss", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!
            return (joined.seconds, peak)
        }
        func countedJoin(_ reader: String) -> [String: Int] {
            let node = try! Node(home: ParleyHome(path: "\(directory)/\(reader)"))
            let counting = CountingStore(try! url.open())
            _ = blocking { try await BucketClient(node: node) { _ throws(BucketError) in counting }.join(code) }
            return counting.snapshot
        }

        let without = join("without")
        let countedWithout = countedJoin("counted-without")
        clock.ms = Node.systemClock()
        let archiving = now()
        let archived = blocking { try await writer.writeArchives("bench") }
        for report in archived where report.written.isEmpty { print("\(label): \(report.date) not archived: \(report.skipped ?? "")") }
        let archiveSeconds = now() - archiving
        let with = join("with")
        let countedWith = countedJoin("counted-with")

        let room = "\(label) bucket, \(days) days × \(filesPerDay) files of \(perFile) events"
        record("join without archives, \(room)", without.seconds, "s")
        record("join with archives, \(room)", with.seconds, "s")
        record("join with ÷ without archives, \(label)", with.seconds / without.seconds, "×")
        record("peak RSS of the join without archives, \(label)", Double(without.peakKiB) / 1024, "MiB")
        record("peak RSS of the join with archives, \(label)", Double(with.peakKiB) / 1024, "MiB", target: "≤ 64 MiB", met: with.peakKiB <= 64 * 1024)
        record("LIST requests of the join without archives, \(label)", Double(countedWithout["list", default: 0]), "LIST")
        record("GET requests of the join without archives, \(label)", Double(countedWithout["get", default: 0]), "GET")
        record("LIST requests of the join with archives, \(label)", Double(countedWith["list", default: 0]), "LIST")
        record("GET requests of the join with archives, \(label)", Double(countedWith["get", default: 0]), "GET")
        let perDay = Double(countedWith["list", default: 0] + countedWith["get", default: 0] - 20) / Double(days)
        record(
            "requests per day of history with archives (beyond today's 20 files), \(label)", perDay, "req/day", target: "≤ 3", met: perDay <= 3)
        record("writing the \(days) days' archives, \(label)", archiveSeconds, "s")
    }
}
