import ArgumentParser
import Foundation
import ParleyClient
import ParleyCore
import ParleyStore

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send a message; prints the new event id.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var text: String
    @Option(name: .customLong("reply-to"), help: "The event id this replies to.") var replyTo: String?
    @Flag(help: "Send as a notice (msgtype notice).") var notice = false
    @Flag(help: "Send as an emote (msgtype emote).") var emote = false
    @Flag(help: "In a bucket room, write the outbox to the bucket now rather than at the next sync.") var flush = false
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let kind: MessageKind = emote ? .emote : notice ? .notice : .text
        let event = try failing { try node.send(roomID, text: text, kind: kind, replyTo: replyTo) }
        // Printed first: the event is stored (PENDING) whether or not the bucket answers now.
        report(event, json: json)
        if flush { try await failingAsync { try await flushIfBucket(node, roomID) } }
    }
}

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replace the text of one of your messages (its history is kept).")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Argument var text: String
    @Flag(help: "In a bucket room, write the outbox to the bucket now rather than at the next sync.") var flush = false
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let event = try failing { try node.edit(roomID, eventID: eventID, text: text) }
        // Printed first: the event is stored (PENDING) whether or not the bucket answers now.
        report(event, json: json)
        if flush { try await failingAsync { try await flushIfBucket(node, roomID) } }
    }
}

struct React: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "React to a message (one reaction per key per user).")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Argument var key: String
    @Flag(help: "In a bucket room, write the outbox to the bucket now rather than at the next sync.") var flush = false
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let event = try failing { try node.react(roomID, eventID: eventID, key: key) }
        // Printed first: the event is stored (PENDING) whether or not the bucket answers now.
        report(event, json: json)
        if flush { try await failingAsync { try await flushIfBucket(node, roomID) } }
    }
}

struct Redact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a message, edit or reaction: its content is stripped everywhere.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Option(help: "Why; recorded in the redaction.") var reason: String?
    @Flag(help: "In a bucket room, write the outbox to the bucket now rather than at the next sync.") var flush = false
    @Flag var json = false

    func run() async throws {
        let node = try global.node()
        let event = try failing { try node.redact(roomID, eventID: eventID, reason: reason) }
        // Printed first: the event is stored (PENDING) whether or not the bucket answers now.
        report(event, json: json)
        if flush { try await failingAsync { try await flushIfBucket(node, roomID) } }
    }
}

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send a receipt: read (or with --delivered, received) up to an event.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Flag(help: "A delivered receipt instead of a read one.") var delivered = false
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        report(try failing { try node.receipt(roomID, eventID: eventID, kind: delivered ? .delivered : .read) }, json: json)
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, from the same calendar arithmetic as event ids (DateFormatter would load ICU).
func formatTime(_ timestampMs: Int64) -> String {
    let stamp = Array(EventID.formatTimestamp(min(max(timestampMs, 0), EventID.maxTimestampMs)))
    return String(stamp[0..<4]) + "-" + String(stamp[4..<6]) + "-" + String(stamp[6..<8]) + " " + String(stamp[9..<11]) + ":"
        + String(stamp[11..<13]) + ":" + String(stamp[13..<15])
}

func describe(_ item: TimelineItem) -> String {
    let time = formatTime(item.timestampMs)
    var text: String
    if let summary = item.summary {
        text = "* \(summary)"
    } else if item.redacted {
        text = "\(item.senderID): [deleted]"
    } else if item.undecryptable {
        text = "\(item.senderID): [encrypted: this device has no key for it yet]"
    } else if item.messageKind == .emote {
        text = "* \(item.senderID) \(item.body ?? "")"
    } else {
        text = "\(item.senderID): \(item.body ?? "[content unavailable]")"
    }
    if item.edited { text += " (edited)" }
    if item.parentEventID != nil { text += " (reply)" }
    let reactions = item.reactions.keys.sorted().map { "\($0)×\(item.reactions[$0]!.count)" }
    if !reactions.isEmpty { text += "  [" + reactions.joined(separator: " ") + "]" }
    return "\(time)  \(text)  \(item.eventID)"
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the room's resolved timeline, oldest first.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Option(help: "How many of the newest items.") var limit = 50
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        guard limit > 0 else {
            printError("error: --limit must be at least 1.")
            throw ExitCode(1)
        }
        let items = try failing { try node.timeline(roomID, limit: limit) }
        if json {
            printJSON(.array(items.map(JSONOutput.item)))
        } else {
            for item in items { print(describe(item)) }
        }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the room's events, one per line, exact wire bytes.",
        discussion: "The output is what `parley import` on another node takes.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String

    func run() throws {
        let node = try global.node()
        let output = FileHandle.standardOutput
        var buffer: [UInt8] = []
        try failing {
            _ = try node.roomState(roomID)
            try node.store.forEachEvent(roomID: roomID) { wire in
                buffer += wire
                buffer.append(0x0A)
                if buffer.count > 1 << 16 {
                    output.write(Data(buffer))
                    buffer.removeAll(keepingCapacity: true)
                }
            }
        }
        output.write(Data(buffer))
    }
}

/// Opens `path` for reading, or standard input for `nil` or `-`.
func openInput(_ path: String?) throws -> Int32 {
    guard let path, path != "-" else { return 0 }
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        printError("error: cannot open \(path): \(String(cString: strerror(errno))).")
        throw ExitCode(1)
    }
    return descriptor
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import events (JSONL) from FILE or standard input.",
        discussion: """
            Every line that is not accepted is reported with its number and the reason (the first 10 of each reason, \
            then how many more), and so are events dated far ahead of this device's clock and sealed events it cannot \
            read. An input whose first 100 lines are all invalid is not Parley events: nothing is imported. Exits 0 \
            only if every line was accepted.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A JSONL file; standard input if omitted or '-'.") var file: String?
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        var reader = JSONLReader(descriptor: try openInput(file))
        let summary = try failing { try node.importEvents(from: &reader) { printError($0) } }
        if json {
            printJSON([
                "accepted": .integer(Int64(summary.accepted)), "duplicates": .integer(Int64(summary.duplicates)),
                "unauthorized": .integer(Int64(summary.unauthorized)), "held_back": .integer(Int64(summary.heldBack)),
                "rejected": .integer(Int64(summary.rejected)), "cannot_open": .integer(Int64(summary.cannotOpen)),
            ])
        } else {
            print("\(summary.lines) lines: \(summary.accepted) accepted, \(summary.duplicates) already held, \(summary.unauthorized) not authorized, \(summary.heldBack) held back, \(summary.rejected) rejected"
                + (summary.cannotOpen > 0 ? "; \(summary.cannotOpen) accepted but could not be opened" : ""))
        }
        if !summary.isClean { throw ExitCode(1) }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit events (JSONL) without importing them: signatures, chains, forks, gaps and room state.",
        discussion: "Exits 0 only if nothing is wrong; warnings (events dated far ahead of this device's clock) do not count.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A JSONL file; standard input if omitted or '-'.") var file: String?
    @Flag var json = false

    func run() throws {
        var reader = JSONLReader(descriptor: try openInput(file))
        let report = try failing { try Auditor.audit(&reader, nowMs: Node.systemClock()) }
        if json {
            printJSON([
                "lines": .integer(Int64(report.lines)),
                "problems": .array(report.problems.map { ["line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)] }),
                "warnings": .array(report.warnings.map { ["line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)] }),
                "rooms": .array(report.rooms.map {
                    ["room_id": .string($0.roomID), "events": .integer(Int64($0.events)), "accepted": .integer(Int64($0.accepted)),
                     "forks": .integer(Int64($0.forks)), "state": JSONOutput.state($0.state)]
                }),
            ])
        } else {
            for problem in report.problems { print((problem.line.map { "line \($0): " } ?? "") + problem.message) }
            for warning in report.warnings { print("warning: " + (warning.line.map { "line \($0): " } ?? "") + warning.message) }
            for room in report.rooms {
                let joined = room.state.joinedMembers.map(\.userID).joined(separator: ", ")
                print("room \(room.roomID): \(room.events) chained events, \(room.accepted) authorized, \(room.forks) forks; members: \(joined.isEmpty ? "none" : joined)")
            }
            print(report.isClean ? "OK: \(report.lines) lines, no problems" : "FAILED: \(report.problems.count) problem(s) in \(report.lines) lines")
        }
        if !report.isClean { throw ExitCode(1) }
    }
}

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Full-text search of message text (current versions, redacted ones excluded).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Words that must all appear.") var query: String
    @Option(help: "Only this room.") var room: String?
    @Option(help: "At most this many results.") var limit = 50
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        let hits = try failing { try node.search(query, roomID: room, limit: limit) }
        if json {
            printJSON(.array(hits.map { hit in
                var item = JSONOutput.item(hit.item).objectValue!
                item["room_id"] = .string(hit.roomID)
                return .object(item)
            }))
        } else {
            for hit in hits { print("\(hit.roomID)  \(describe(hit.item))") }
        }
    }
}

struct Rejected: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the rejected-events log: what this node refused, when, and why (newest first).",
        discussion: """
            Events stored but not authorized are not listed here; `parley import` reports those, and `parley events` \
            includes them. The log keeps its newest 10,000 entries.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "At most this many entries.") var limit = 50
    @Flag(help: "Empty the log instead of showing it.") var clear = false
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        if clear {
            let removed = try failing { try node.store.clearRejectedEvents() }
            if json {
                printJSON(["removed": .integer(Int64(removed))])
            } else {
                print("Removed \(removed) \(removed == 1 ? "entry" : "entries") from the rejected-events log.")
            }
            return
        }
        let entries = try failing { try node.store.rejectedEvents(limit: limit) }
        if json {
            printJSON(.array(entries.map { entry in
                ["received_ms": .integer(entry.receivedMs), "room_id": entry.roomID.map(JSONValue.string) ?? .null,
                 "event_id": entry.eventID.map(JSONValue.string) ?? .null, "reason": .string(entry.reason)]
            }))
        } else {
            for entry in entries {
                print("\(formatTime(entry.receivedMs))  \(entry.eventID ?? entry.roomID ?? "-")  \(entry.reason)")
            }
        }
    }
}
