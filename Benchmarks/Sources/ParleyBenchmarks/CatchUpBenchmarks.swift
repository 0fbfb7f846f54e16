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
