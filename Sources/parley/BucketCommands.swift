import ArgumentParser
import Foundation
import ParleyBucket
import ParleyClient
import ParleyCore

/// The bucket transport, with settings from the environment: `PARLEY_BUCKET_GZIP=1` writes `.jsonl.gz` files;
/// `PARLEY_BUCKET_RETENTION=governance:DAYS` (or `compliance:DAYS`) asks S3 Object Lock to keep each file.
func bucketClient(_ node: Node, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> BucketClient {
    var settings = BucketSettings()
    settings.gzip = ["1", "true", "yes"].contains(environment["PARLEY_BUCKET_GZIP"]?.lowercased() ?? "")
    if let text = environment["PARLEY_BUCKET_RETENTION"], !text.isEmpty {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let mode = Retention.Mode(rawValue: parts[0].uppercased()), let days = Int(parts[1]), days > 0 else {
            throw ClientError(.invalidArgument, "PARLEY_BUCKET_RETENTION is MODE:DAYS, MODE governance or compliance; not \(text).")
        }
        settings.retention = Retention(mode: mode, days: days)
    }
    return BucketClient(node: node, settings: settings)
}

/// Writes a bucket room's outbox now; nothing for a local room.
func flushIfBucket(_ node: Node, _ roomID: String) async throws {
    let client = try bucketClient(node)
    guard try client.inviteCode(roomID) != nil else { return }
    _ = try await client.flush(roomID)
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exchange events with the buckets rooms live in: write this device's outbox, read other devices' new files.",
        discussion: """
            Without --watch, syncs once and prints a summary. With --watch, keeps polling and prints every new \
            event as it arrives (with --json, one timeline item per line); the outbox is flushed once its oldest \
            event has waited --flush-interval seconds. Faulty files are reported and skipped; their good events are kept.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this room (default: every bucket room).") var roomID: String?
    @Flag(help: "Keep syncing until interrupted.") var watch = false
    @Option(help: "Seconds between polls with --watch.") var interval = 1.0
    @Option(name: .customLong("flush-interval"), help: "With --watch, seconds an event may wait in the outbox.") var flushInterval = 2.0
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let client = try failing { try bucketClient(node) }
        guard interval > 0, flushInterval >= 0 else {
            printError("error: --interval must be above 0 and --flush-interval at least 0.")
            throw ExitCode(1)
        }
        if !watch {
            let rooms = try failing { try self.rooms(node) }
            var results: [JSONValue] = []
            for room in rooms {
                let (flushed, report) = try await failingAsync { (try await client.flush(room), try await client.sync(room)) }
                if json {
                    results.append(summary(flushed, report))
                } else {
                    print("\(room): wrote \(flushed.files.count) file(s) with \(flushed.events) event(s); read \(report.filesRead) file(s), \(report.accepted.count) new event(s)\(report.heldBack > 0 ? ", \(report.heldBack) waiting for missing events" : "")")
                    for problem in report.problems { print("  problem: \(problem)") }
                    for warning in report.warnings { print("  warning: \(warning)") }
                    for ignored in report.ignored { print("  ignored: \(ignored)") }
                }
            }
            if json { printJSON(.array(results)) }
            return
        }
        // Watching: print what arrives, flush what waits, until interrupted.
        while true {
            let rooms = (try? self.rooms(node)) ?? []
            for room in rooms {
                do {
                    let status = try node.store.outboxStatus(roomID: room, senderKey: node.identity.signingKeyBase64)
                    if let oldest = status.oldestPendingMs, Double(node.clock() - oldest) >= flushInterval * 1000 {
                        _ = try await client.flush(room)
                    }
                    let report = try await client.sync(room)
                    for problem in report.problems { printError("\(room): problem: \(problem)") }
                    for warning in report.warnings { printError("\(room): warning: \(warning)") }
                    for eventID in report.accepted { try show(eventID, in: room, node: node) }
                } catch {
                    // A bucket that is down for a while is not the end of watching: say so and poll again.
                    printError("\(room): \((error as? ClientError)?.message ?? "\(error)")")
                }
            }
            try await Task.sleep(nanoseconds: UInt64(interval * 1e9))
        }
    }

    func rooms(_ node: Node) throws -> [String] {
        if let roomID {
            guard try node.store.bucketRoom(roomID: roomID) != nil else {
                throw ClientError(.unknownRoom, "Room \(roomID) does not live in a bucket on this node.")
            }
            return [roomID]
        }
        let rooms = try node.store.bucketRooms().map(\.roomID)
        if rooms.isEmpty && !watch {
            throw ClientError(.unknownRoom, "This node has no bucket rooms.", remedy: "Create one with `parley room create ROOM --bucket URL`, or join with an invite code.")
        }
        return rooms
    }

    func show(_ eventID: String, in room: String, node: Node) throws {
        guard let item = try node.store.item(eventID: eventID) else {
            if json { emit(CanonicalJSON.string(["room_id": .string(room), "event_id": .string(eventID)])) }
            return
        }
        if json {
            guard case .object(var object) = JSONOutput.item(item) else { return }
            object["room_id"] = .string(room)
            emit(CanonicalJSON.string(.object(object)))
        } else {
            emit("\(room) \(describe(item))")
        }
    }

    /// Writes a line at once (print's buffer would hold it back when the output is a pipe).
    func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func summary(_ flushed: FlushReport, _ report: SyncReport) -> JSONValue {
        [
            "room_id": .string(report.roomID),
            "written_files": .array(flushed.files.map(JSONValue.string)), "written_events": .integer(Int64(flushed.events)),
            "read_files": .integer(Int64(report.filesRead)), "new_events": .array(report.accepted.map(JSONValue.string)),
            "duplicates": .integer(Int64(report.duplicates)), "held_back": .integer(Int64(report.heldBack)),
            "problems": .array(report.problems.map(JSONValue.string)), "warnings": .array(report.warnings.map(JSONValue.string)),
            "ignored": .array(report.ignored.map(JSONValue.string)),
        ]
    }
}

struct Bucket: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Work with buckets directly.", subcommands: [BucketVerify.self])
}

struct BucketVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Audit a bucket offline: every file and event, chains, forks, gaps and state. Exits 1 on any fault.",
        discussion: """
            Needs no identity; stores nothing. Each room is judged with the create its metadata.json names, as a node \
            that joined it would. Objects that are not Parley's, and events dated far ahead of this device's clock, are \
            listed as warnings.
            """)
    @Argument(help: "file:///absolute/path or s3://BUCKET/PREFIX.") var url: String
    @Argument(help: "Only this room.") var roomID: String?
    @Flag var json = false

    func run() async throws {
        let report = try await failingAsync { try await BucketAuditor().audit(try BucketURL(url).open(), roomID: roomID) }
        let audit = report.audit
        if json {
            printJSON([
                "bucket": .string(report.location), "objects": .integer(Int64(report.objects)), "events": .integer(Int64(audit.lines)),
                "problems": .array(audit.problems.map {
                    ["file": $0.file.map(JSONValue.string) ?? .null, "line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)]
                }),
                "warnings": .array(report.warnings.map(JSONValue.string)),
                "rooms": .array(audit.rooms.map {
                    ["room_id": .string($0.roomID), "events": .integer(Int64($0.events)), "accepted": .integer(Int64($0.accepted)),
                     "forks": .integer(Int64($0.forks)), "state": JSONOutput.state($0.state)]
                }),
            ])
        } else {
            for problem in audit.problems { print("problem: \(problem.text)") }
            for warning in report.warnings { print("warning: \(warning)") }
            for room in audit.rooms {
                let joined = room.state.joinedMembers.map(\.userID).joined(separator: ", ")
                print("room \(room.roomID): \(room.events) chained events, \(room.accepted) authorized, \(room.forks) forks; members: \(joined.isEmpty ? "none" : joined)")
            }
            print(report.isClean
                ? "OK: \(report.objects) objects, \(audit.lines) events, no faults"
                : "FAULTY: \(audit.problems.count) problem(s) in \(report.objects) objects")
        }
        if !report.isClean { throw ExitCode(1) }
    }
}
