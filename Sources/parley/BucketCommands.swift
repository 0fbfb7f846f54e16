import ArgumentParser
import Foundation
import Logging
import ParleyClient
import Synchronization

/// The bucket transport, with the node's bucket settings (``Configuration``: gzip, retention).
func bucketClient(_ node: Node) throws -> BucketClient {
    BucketClient(node: node, settings: try Configuration.resolve(home: node.home).bucketSettings)
}

/// Writes a bucket room's outbox now; nothing for a local room. `progress` is told of the blocks written.
func flushIfBucket(_ node: Node, _ roomID: String, progress: BlockTransfer.Progress? = nil) async throws {
    var client = try bucketClient(node)
    client.blockProgress = progress
    guard try client.inviteCode(roomID) != nil else { return }
    _ = try await client.flush(roomID)
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exchange events with the buckets rooms live in: write this device's outbox, read other devices' new files.",
        discussion: """
            Without --watch, syncs once and prints a summary; a room whose bucket fails is reported (naming the \
            room and the bucket) and the others are still synced. With --watch, keeps polling and prints every new \
            event as it arrives (with --json, one timeline item per line); the outbox is flushed once its oldest \
            event has waited --flush-interval seconds; each room is polled on its own, and a failing one is tried \
            again after a wait that doubles (up to a minute). Ctrl-C or SIGTERM writes the outbox before exiting. \
            Faulty files are reported and skipped; their good events are kept. One sync at a time per home.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Only this room (default: every bucket room).") var roomID: String?
    @Flag(help: "Keep syncing until interrupted.") var watch = false
    // Unconditional, so that a negative number reaches `validate()` rather than reading as an unknown option.
    @Option(parsing: .unconditional, help: "Seconds between polls with --watch (default: sync.interval of `parley config show`, 1).")
    var interval: Double?
    @Option(
        name: .customLong("flush-interval"), parsing: .unconditional,
        help: "With --watch, seconds an event may wait in the outbox (default: sync.flush_interval, 2).")
    var flushInterval: Double?
    @OptionGroup var time: TimeOptions
    @Flag(
        name: .customLong("new-store"),
        help: "Start an empty store if the home's store is gone, and restore into it the bucket rooms the home records (this device's events first).")
    var newStore = false
    @Flag var json = false

    func validate() throws {
        for (setting, value) in flags {
            if let problem = setting.problem(with: value), let flag = setting.flag { throw ValidationError("\(flag) \(problem); it was \(value).") }
        }
    }

    /// The settings this command's flags give.
    var flags: [Setting: SettingValue] {
        var flags: [Setting: SettingValue] = [:]
        if let interval { flags[.syncInterval] = .seconds(interval) }
        if let flushInterval { flags[.syncFlushInterval] = .seconds(flushInterval) }
        return flags
    }

    func run() async throws {
        // Before the lock names this process: whoever sees it there may signal it.
        let signals = watch ? TerminationSignals() : nil
        let home = global.parleyHome
        let configuration = try global.configuration(flags: flags)
        if newStore { _ = try failing { try Identity.load(home: home) } }
        let lock = try failing { try home.lockForSyncing(watch ? "sync --watch" : "sync") }
        defer { withExtendedLifetime(lock) {} }
        let node = newStore ? try failing { try Node(home: home, creatingStore: true) } : try global.node()
        let client = BucketClient(node: node, settings: configuration.bucketSettings)
        if newStore {
            let restored = try await failingAsync { try await client.restoreRecordedRooms() }
            if restored.isEmpty { printError("note: no recorded bucket room is missing from the store; nothing to restore.") }
            for (room, problem) in restored {
                printError(
                    "room \(room): "
                        + (problem.map { "not restored: \($0) Run `parley sync --new-store` again once the bucket answers." } ?? "restored from its bucket"))
            }
        }
        for room in (try? node.recordBucketRooms()) ?? [] {
            printError(
                "note: room \(room.roomID) (\(room.bucketURL)) is recorded in \(home.bucketRoomsPath) but not in the store; `parley sync --new-store` restores it."
            )
        }
        if let signals {
            // A room named that is not a bucket room is refused now, not polled in silence.
            if roomID != nil { _ = try failing { try self.rooms(node) } }
            let exitStatus = await watchRooms(node, client, configuration, until: signals)
            if exitStatus != 0 { throw ExitCode(exitStatus) }
            return
        }
        let relayClient = RelayClient(node: node)
        let relayRooms = try failing { try relayClient.rooms() }.filter { room in roomID.map { $0 == room.roomID } ?? true }
        let rooms = try failing { try self.rooms(node, relayRooms: relayRooms.count) }
        var results: [JSONValue] = []
        var failed = 0
        for room in rooms {
            do {
                let flushed = try await withBucketNotes { try await client.flush(room.roomID) }
                let report = try await withBucketNotes { try await client.sync(room.roomID) }
                // What arrived (now, or earlier while the room's pace held the receipt back) is acknowledged now.
                if case .sent? = try? node.acknowledgeDelivery(room.roomID) {
                    _ = try await withBucketNotes { try await client.flush(room.roomID) }
                }
                if json {
                    results.append(summary(flushed, report))
                } else {
                    output(
                        "\(room.roomID): wrote \(flushed.files.count) file(s) with \(flushed.events) event(s); read \(report.filesRead) file(s)\(report.archivesRead > 0 ? " and \(report.archivesRead) archive part(s)" : ""), \(report.accepted.count) new event(s)\(report.heldBack > 0 ? ", \(report.heldBack) waiting for missing events" : "")\(keysNote(report.keys))\(flushed.blocksDeleted > 0 ? "; deleted \(flushed.blocksDeleted) block(s) of redacted files" : "")"
                    )
                    for problem in report.problems { output("  problem: \(problem)") }
                    for warning in report.warnings { output("  warning: \(warning)") }
                    for ignored in report.ignored { output("  ignored: \(ignored)") }
                }
            } catch {
                let error = ClientError(describing: error, home: home)
                // A damaged store is every room's problem, and has its own message.
                if error.code == .storeDamaged { throw reportError(error) }
                // One room's bucket failing says nothing about the others': report it and go on.
                failed += 1
                printError("error: room \(room.roomID), bucket \(room.bucketURL): \(error.message)")
                if let remedy = error.remedy { printError(remedy) }
                if json {
                    var item = JSONObject(["room_id": .string(room.roomID), "bucket": .string(room.bucketURL), "error": .string(error.message)])
                    item["code"] = .string(error.code.name)
                    if let kind = error.bucketFailure { item["bucket_failure"] = .string(kind.name) }
                    results.append(.object(item))
                }
            }
        }
        failed += await syncRelays(relayClient, relayRooms, into: &results)
        if json { printJSON(.array(results)) }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Syncs relay rooms, one connection per relay; reports each room, and each relay that fails.
    /// - Returns: how many relays failed.
    func syncRelays(_ client: RelayClient, _ rooms: [RelayClient.RelayRoom], into results: inout [JSONValue]) async -> Int {
        var failed = 0
        for (relay, group) in Dictionary(grouping: rooms, by: \.relay).sorted(by: { $0.key < $1.key }) {
            do {
                for report in try await client.sync(group.map(\.roomID)) {
                    if json {
                        results.append([
                            "room_id": .string(report.roomID), "relay": .string(relay), "sent": .integer(Int64(report.sent)),
                            "new": .integer(Int64(report.accepted)), "pushed": .integer(Int64(report.pushed)),
                            "problems": .array(report.problems.map(JSONValue.string)),
                        ])
                    } else {
                        output(
                            "\(report.roomID): relay \(relay): sent \(report.sent) event(s), \(report.accepted) new event(s)"
                                + (report.pushed > 0 ? ", pushed \(report.pushed) the relay lacked" : ""))
                        for problem in report.problems { output("  problem: \(problem)") }
                    }
                }
            } catch {
                let error = ClientError(describing: error, home: node(client))
                failed += 1
                printError("error: relay \(relay): \(error.message)")
                if let remedy = error.remedy { printError(remedy) }
                if json { results.append(["relay": .string(relay), "error": .string(error.message), "code": .string(error.code.name)]) }
            }
        }
        return failed
    }

    func node(_ client: RelayClient) -> ParleyHome { client.node.home }

    /// Keeps every bucket room in step (a ``NodeRunner``) until SIGINT or SIGTERM; then writes the outbox.
    /// - Returns: the exit status: 1 if events stay unsent.
    func watchRooms(_ node: Node, _ client: BucketClient, _ configuration: Configuration, until signals: TerminationSignals) async -> Int32 {
        var settings = NodeRunner.Settings()
        settings.roomID = roomID
        settings.schedule = BucketSchedule.Settings(
            pollIntervalMs: Int64(configuration.syncInterval * 1000), flushAfterMs: Int64(configuration.syncFlushInterval * 1000))
        let runner = NodeRunner(
            client: client, settings: settings, observer: WatchPrinter(command: self, node: node),
            logger: Logger(label: "parley.sync", factory: { _ in SwiftLogNoOpLogHandler() }))
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await signals.next()
                // A second Ctrl-C ends the process at once.
                signals.restoreDefaults()
                runner.shutDown()
                return false
            }
            group.addTask {
                try? await runner.run()
                return true
            }
            // The runner is never cancelled: it finishes the write in progress and writes the outbox.
            while let runnerEnded = await group.next() {
                if runnerEnded { group.cancelAll() }
            }
        }
        return runner.roomsLeftUnsent > 0 ? 1 : 0
    }

    /// The bucket rooms to sync; none is an error unless `relayRooms` are to be synced.
    func rooms(_ node: Node, relayRooms: Int = 0) throws -> [BucketRoom] {
        if let roomID {
            guard let room = try node.bucketRoom(roomID) else {
                if relayRooms > 0 { return [] }
                throw ClientError(.unknownRoom, "Room \(roomID) does not live in a bucket or at a relay on this node.")
            }
            return [room]
        }
        let rooms = try node.bucketRooms()
        if rooms.isEmpty && relayRooms == 0 && !watch {
            throw ClientError(
                .unknownRoom, "This node has no bucket or relay rooms.",
                remedy: "Create one with `parley room create ROOM --bucket URL` (or --relay URL), or join with an invite code.")
        }
        return rooms
    }

    /// Prints the event that arrived with id `eventID`: every accepted event carrying it that `shown` does not hold
    /// yet, so that a copy of the id that sorts first and was shown before never stands in for the event that came.
    func show(_ eventID: String, in room: String, node: Node, shown: ShownEvents) throws {
        let items = try node.items(eventID: eventID).filter { shown.insert($0) }
        if items.isEmpty, json, try node.items(eventID: eventID).isEmpty {
            emit(CanonicalJSON.string(["room_id": .string(room), "event_id": .string(eventID)]))
        }
        for item in items {
            if json {
                guard case .object(var object) = JSONOutput.item(item) else { continue }
                object["room_id"] = .string(room)
                emit(CanonicalJSON.string(.object(object)))
            } else {
                for line in try TimelineText(node: node, time: time).lines(item, prefix: "\(room) ") { emit(TerminalText.escape(line)) }
            }
        }
    }

    /// Writes a line at once (print's buffer would hold it back when the output is a pipe). Lines for a person are
    /// escaped by the caller, as `output(_:)` does.
    func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// "; forwarded 3 message key(s) to other devices, asked for 1": what the sync did with keys, when anything.
    func keysNote(_ keys: KeyExchangeReport) -> String {
        var parts: [String] = []
        if keys.forwardedKeys > 0 { parts.append("forwarded \(keys.forwardedKeys) message key(s) to other devices") }
        if keys.epochShares > 0 { parts.append("shared earlier keys in \(keys.epochShares) event(s)") }
        if keys.requestedEvents > 0 { parts.append("asked for the keys of \(keys.requestedEvents) message(s) this device cannot open") }
        return parts.isEmpty ? "" : "; " + parts.joined(separator: ", ")
    }

    func summary(_ flushed: FlushReport, _ report: SyncReport) -> JSONValue {
        [
            "room_id": .string(report.roomID),
            "keys": [
                "forwarded": .integer(Int64(report.keys.forwardedKeys)), "epoch_shares": .integer(Int64(report.keys.epochShares)),
                "requested": .integer(Int64(report.keys.requestedEvents)),
            ],
            "written_files": .array(flushed.files.map(JSONValue.string)), "written_events": .integer(Int64(flushed.events)),
            "read_files": .integer(Int64(report.filesRead)), "archives_read": .integer(Int64(report.archivesRead)),
            "new_events": .array(report.accepted.map(JSONValue.string)),
            "duplicates": .integer(Int64(report.duplicates)), "held_back": .integer(Int64(report.heldBack)),
            "problems": .array(report.problems.map(JSONValue.string)), "warnings": .array(report.warnings.map(JSONValue.string)),
            "ignored": .array(report.ignored.map(JSONValue.string)),
        ]
    }
}

/// The events `sync --watch` has printed, by device and place (ids alone can be shared, §6.5). Bounded: past the
/// limit the oldest half is forgotten, and at worst an event copied long ago is printed twice.
final class ShownEvents: Sendable {
    private let shown = Mutex<(set: Set<ChainPosition>, order: [ChainPosition])>(([], []))
    static let limit = 100_000

    /// Records `item`; `false` when it was printed before.
    func insert(_ item: TimelineItem) -> Bool {
        let position = ChainPosition(senderKey: item.senderKey, seq: item.seq)
        return shown.withLock { state in
            guard state.set.insert(position).inserted else { return false }
            state.order.append(position)
            if state.order.count > ShownEvents.limit {
                let dropped = state.order.prefix(ShownEvents.limit / 2)
                state.set.subtract(dropped)
                state.order.removeFirst(dropped.count)
            }
            return true
        }
    }
}

/// Prints what `sync --watch` sees: new events as they come, problems and warnings, failures and recoveries.
struct WatchPrinter: NodeRunnerObserver {
    let command: Sync
    let node: Node
    let shown = ShownEvents()

    func roomSynced(_ room: BucketRoom, _ report: SyncReport) {
        for problem in report.problems { printError("\(room.roomID): problem: \(problem)") }
        for warning in report.warnings { printError("\(room.roomID): warning: \(warning)") }
        do {
            for eventID in report.accepted { try command.show(eventID, in: room.roomID, node: node, shown: shown) }
        } catch {
            printError("\(room.roomID): cannot show new events: \(ClientError(describing: error).message)")
        }
    }

    func roomFailed(_ room: BucketRoom, report: String) { printError(report) }

    func roomRecovered(_ room: BucketRoom, report: String) { printError(report) }

    func flushingBeforeExit(events: Int, rooms: Int) {
        printError(
            "Writing the outbox before exiting (\(events) event(s) in \(rooms) room(s)); Ctrl-C again stops at once and leaves them for the next `parley sync`."
        )
    }

    func leftUnsent(_ room: BucketRoom, events: Int, reason: String) {
        printError("room \(room.roomID): \(events) event(s) stay unsent (\(reason)); the next `parley sync` writes them.")
    }

    func relaySynced(relay: String, _ report: RelayClient.RoomReport) {
        for problem in report.problems { printError("\(report.roomID): problem: \(problem)") }
    }

    func relayArrived(roomID: String, eventIDs: [String]) {
        do {
            for eventID in eventIDs { try command.show(eventID, in: roomID, node: node, shown: shown) }
        } catch {
            printError("\(roomID): cannot show new events: \(ClientError(describing: error).message)")
        }
    }

    func relayFailed(relay: String, report: String) { printError(report) }

    func relayRecovered(relay: String) { printError("relay \(relay): connected again.") }
}

struct Bucket: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Work with buckets directly.", subcommands: [BucketVerify.self, BucketArchive.self])
}

struct BucketArchive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Write the archives of a bucket room's past days now, as a running node does on its own.",
        discussion: """
            An archive holds a whole UTC day's events in a few objects, so a device that joins later reads those \
            instead of every log file of the day (docs/PROTOCOL.md §13.9). A day is archived once it ended more than \
            an hour ago, when this device has read every log file of it and no complete archive of it is there; never \
            twice by this device. Without --date, every past day not settled before; with it, that day alone.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The bucket room.") var roomID: String
    @Option(help: "Only this day, YYYY-MM-DD (UTC).") var date: String?
    @Flag var json = false

    func run() async throws {
        let home = global.parleyHome
        let configuration = try global.configuration()
        // One writer of archives per home: a running node writes them too, and two writers in one home would each
        // write a set of the same day.
        let lock = try failing { try home.lockForSyncing("bucket archive") }
        defer { withExtendedLifetime(lock) {} }
        let client = BucketClient(node: try global.node(), settings: configuration.bucketSettings)
        let reports = try await failingAsync { try await withBucketNotes { try await client.writeArchives(roomID, date: date) } }
        if json {
            printJSON(
                .array(
                    reports.map { report in
                        [
                            "date": .string(report.date), "written": .array(report.written.map(JSONValue.string)),
                            "skipped": report.skipped.map(JSONValue.string) ?? .null, "settled": .bool(report.isSettled),
                        ]
                    }))
            return
        }
        if reports.isEmpty { output("\(roomID): no past day to archive") }
        for report in reports {
            if report.written.isEmpty {
                output("\(roomID) \(report.date): not written: \(report.skipped ?? "")")
            } else {
                output("\(roomID) \(report.date): wrote \(report.written.count) part(s)")
                for key in report.written { output("  \(key)") }
            }
        }
    }
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
                "blocks": .integer(Int64(report.blocks)), "block_bytes": .integer(report.blockBytes),
                "problems": .array(
                    audit.problems.map {
                        ["file": $0.file.map(JSONValue.string) ?? .null, "line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)]
                    }),
                "warnings": .array(report.warnings.map(JSONValue.string)),
                "rooms": .array(audit.rooms.map(JSONOutput.auditedRoom)),
            ])
        } else {
            for problem in audit.problems { output("problem: \(problem.text)") }
            for warning in report.warnings { output("warning: \(warning)") }
            for room in audit.rooms { output(describe(room)) }
            output(
                report.isClean
                    ? "OK: \(report.objects) objects, \(audit.lines) events, \(report.blocks) blocks of shared files, no faults"
                    : "FAULTY: \(audit.problems.count) problem(s) in \(report.objects) objects")
        }
        if !report.isClean { throw ExitCode(1) }
    }
}
