import ArgumentParser
import Foundation
import ParleyClient

/// What every command that publishes one event of a room takes after its arguments, and how it ends.
struct PublishOptions: ParsableArguments {
    @Flag(help: "In a bucket room, write the outbox to the bucket now rather than at the next sync.") var flush = false
    @Flag(help: "Print the event id, hash and seq as JSON.") var json = false

    /// Publishes the event `body` signs in `roomID`, prints its id, then with --flush writes a bucket room's outbox.
    func publish(in roomID: String, _ global: GlobalOptions, _ body: (Node) throws -> VerifiedEvent) async throws {
        try await publishAll(in: roomID, global) { node in [try body(node)] }
    }

    /// As ``publish(in:_:_:)``, for a command that publishes several events: each is printed (a JSON line each).
    func publishAll(in roomID: String, _ global: GlobalOptions, _ body: (Node) throws -> [VerifiedEvent]) async throws {
        let node = try global.node()
        let events = try failing { try body(node) }
        // Printed first: the events are stored (PENDING) whether or not the bucket answers now.
        for event in events { report(event, json: json) }
        if flush { try await failingAsync { try await flushIfBucket(node, roomID) } }
        try await sendThroughRelay(node, roomID)
    }
}

/// Where a message's text comes from: the argument, standard input (`-`), or a file (`--text-file`).
struct TextInput: ParsableArguments {
    @Argument(help: "The text; '-' reads it from standard input.") var text: String?
    @Option(name: .customLong("text-file"), help: "Read the text from this file (UTF-8) instead.") var textFile: String?

    /// Input beyond this is not read: no message comes near it (an event holds at most 64 KiB).
    static let maxBytes = 1 << 20

    func validate() throws {
        guard text == nil || textFile == nil else { throw ValidationError("Give the text, or --text-file PATH, not both.") }
    }

    /// Whether text was given at all.
    var isGiven: Bool { text != nil || textFile != nil }

    /// Refuses a command without text.
    func require() throws {
        guard isGiven else { throw ValidationError("Give the text, '-' to read it from standard input, or --text-file PATH.") }
    }

    /// The text; from standard input or a file, without its final line ending.
    /// - Throws: ``ClientError`` for input that cannot be read, is not UTF-8, or is larger than ``maxBytes``.
    func read() throws -> String {
        if let text, text != "-" { return text }
        let source = textFile ?? "standard input"
        let descriptor = try openInput(textFile)
        defer { if descriptor != 0 { close(descriptor) } }
        let bytes = try BoundedRead.bytes(from: descriptor, atMost: TextInput.maxBytes, source: source)
        if bytes.count > TextInput.maxBytes {
            var status = stat()
            let size =
                fstat(descriptor, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG ? "\(status.st_size) bytes" : "more than \(TextInput.maxBytes) bytes"
            throw ClientError(
                .tooLarge, "\(source) holds \(size): too large for one message, which may be at most \(Event.maxWireBytes) bytes (64 KiB) as an event.",
                remedy:
                    "Send it as several messages of at most \(Node.maxMessageBytes / 1024) KiB each (\(Node.maxEncryptedMessageBytes / 1024) KiB in an encrypted room)."
            )
        }
        guard var text = String(validating: bytes, as: UTF8.self) else {
            throw ClientError(.invalidArgument, "\(source) is not UTF-8 text.", remedy: "Convert it to UTF-8 first (for example with iconv).")
        }
        // A file or `echo` ends its last line; that line ending is no part of the message.
        while let last = text.last, last.isNewline { text.removeLast() }
        return text
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a message, or share a file with --file; prints the new event id.",
        discussion: """
            The text is the argument, or with '-' standard input, or with --text-file a file; one message holds up to \
            about 63 KiB of text (46 KiB in an encrypted room). With --file, the file (up to 4 GiB) is sealed into \
            blocks under a key of its own and shared with the text as its caption; in a bucket room its blocks and \
            the message are written to the bucket at once, with a progress bar on a terminal.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @OptionGroup var input: TextInput
    @Option(help: "Share this file; the text, if any, is its caption.") var file: String?
    @Option(name: .customLong("reply-to"), help: "The event this replies to: its id, or the start of the id's last part.") var replyTo: String?
    @Flag(help: "Send as a notice (msgtype notice).") var notice = false
    @Flag(help: "Send as an emote (msgtype emote).") var emote = false
    @OptionGroup var routing: PriorityOption
    @OptionGroup var options: PublishOptions

    func validate() throws {
        if file == nil { try input.require() }
        guard file == nil || (!notice && !emote) else { throw ValidationError("--file shares a file; --notice and --emote are for text.") }
    }

    func run() async throws {
        if let file {
            try await shareFile(file)
            return
        }
        let kind: MessageKind = emote ? .emote : notice ? .notice : .text
        try await options.publish(in: roomID, global) { node in
            let parent = try replyTo.map { try node.resolveEventID($0, in: roomID) }
            return try node.send(roomID, text: try input.read(), kind: kind, replyTo: parent, priority: routing.priority)
        }
    }

    func shareFile(_ path: String) async throws {
        let node = try global.node()
        let sealing = ProgressBar("sealing  ", total: 0)
        let event = try failing {
            let parent = try replyTo.map { try node.resolveEventID($0, in: roomID) }
            let caption = input.isGiven ? try input.read() : nil
            defer { sealing.finish() }
            return try node.shareFile(roomID, path: path, caption: caption, replyTo: parent, priority: routing.priority) { done, total in
                sealing.set(done, of: total)
            }
        }
        report(event, json: options.json)
        // A file is shared once its blocks are where members fetch them: written now, not at the next sync.
        let layout = try? node.fileAttachment(eventID: event.event.eventID).reference.layout
        let stored = layout.map { Int64($0.dataBlockCount) * Int64($0.dataTier.byteCount) + Int64($0.rootTier.byteCount) } ?? 0
        let uploading = ProgressBar("uploading", total: stored)
        defer { uploading.finish() }
        try await failingAsync { try await flushIfBucket(node, roomID) { uploading.add($0) } }
        try await sendThroughRelay(node, roomID)
    }
}

extension MessagePriority: ExpressibleByArgument {}

/// `--priority`: how urgently a message travels.
struct PriorityOption: ParsableArguments {
    @Option(help: "low, normal, high or urgent: under backpressure the relay and the outbox send the more urgent first.")
    var priority: MessagePriority = .normal
}

struct Forward: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forward a message into a room, with a signed reference to the original; prints the new event id.",
        discussion: """
            The forward carries the text the message shows now (and its file: fetch it first with `parley download`) and             names the original by event id, hash and sender. A member who holds the original sees the forward marked as             checked against it; one who does not sees it as not checked. Forwarding out of an encrypted room into one that             is not is refused unless --allow-clear.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The message's whole id (`parley log --json` gives it), or its room then the start of the id's last part.")
    var references: [String]
    @Option(help: "The room to forward it into.") var to: String
    @Flag(help: "Forward out of an encrypted room into one that is not.") var allowClear = false
    @OptionGroup var routing: PriorityOption
    @OptionGroup var options: PublishOptions

    func validate() throws {
        guard (1...2).contains(references.count) else { throw ValidationError("Give the message's id, or its room and the start of its id.") }
    }

    func run() async throws {
        try await options.publish(in: to, global) { node in
            let (_, eventID) = try resolveMessageReference(references, node: node, command: "forward")
            return try node.forward(eventID: eventID, to: to, priority: routing.priority, allowClear: allowClear)
        }
    }
}

struct Download: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save the file a message shares.",
        discussion: """
            Give the message's whole id, or the room and the start of the id's last part (as `parley log` shows it). \
            The file is written to -o PATH, or under its name in the current folder; an existing file is never \
            replaced. Blocks this node holds are read here, the others fetched from the room's bucket or relay several \
            at a time, or from its peers, and kept, so a download that was cut takes up where it stopped. A running \
            node fetches the files of its peer rooms (up to 64 MiB) as their messages arrive. Every block, then the whole file's \
            SHA-256, is checked before the file gets its name; until then it is PATH.part. Prints the path.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The message's id; or the room, then the start of the id's last part.") var references: [String]
    @Option(name: [.customShort("o"), .customLong("output")], help: "Where to write the file.") var outputPath: String?
    @Flag(help: "Print the path, size and SHA-256 as JSON.") var json = false

    func validate() throws {
        guard (1...2).contains(references.count) else { throw ValidationError("Give the message's whole id, or ROOM and the start of the id.") }
    }

    func run() async throws {
        let node = try global.node()
        let (roomID, eventID) = try failing { try resolveMessageReference(references, node: node, command: "download") }
        let file = try failing { try node.fileAttachment(eventID: eventID) }
        let path = outputPath ?? file.name
        let source = try failing { try bucketClient(node).blockSource(roomID) }
        let bar = ProgressBar("downloading", total: file.size)
        let report = try await failingAsync {
            defer { bar.finish() }
            if let source { return try await node.download(file, from: source, to: path) { done, _ in bar.set(done) } }
            return try await node.withPeerBlockSource(roomID) { source in try await node.download(file, from: source, to: path) { done, _ in bar.set(done) } }
        }
        if json {
            printJSON(["path": .string(report.path), "size": .integer(report.bytes), "sha256": .string(Hex.encode(file.sha256))])
        } else {
            output(report.path)
        }
    }
}

/// The room and event a command's `EVENT_ID` or `ROOM SHORT_ID` arguments name.
/// - Throws: ``ClientError`` when a lone argument is not a whole event id, or names no event of the room.
func resolveMessageReference(_ references: [String], node: Node, command: String) throws -> (roomID: String, eventID: String) {
    if references.count == 2 { return (references[0], try node.resolveEventID(references[1], in: references[0])) }
    guard let separator = references[0].range(of: "::") else {
        throw ClientError(
            .invalidArgument, "\(references[0]) is not a whole event id.", remedy: "Give the room too: parley \(command) ROOM \(references[0]).")
    }
    let roomID = String(references[0][..<separator.lowerBound])
    return (roomID, try node.resolveEventID(references[0], in: roomID))
}

struct Edit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the text of one of your messages (its history is kept).",
        discussion:
            "EVENT_ID may be the start of the id's last part, as `parley log` shows it. The text is the argument, '-' for standard input, or --text-file.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @OptionGroup var input: TextInput
    @OptionGroup var options: PublishOptions

    func validate() throws { try input.require() }

    func run() async throws {
        try await options.publish(in: roomID, global) { node in
            try node.edit(roomID, eventID: try node.resolveEventID(eventID, in: roomID), text: try input.read())
        }
    }
}

struct React: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "React to a message (one reaction per key per user), or take a reaction back with --remove.",
        discussion: """
            EVENT_ID may be the start of the id's last part, as `parley log` shows it. --remove redacts your reactions \
            with KEY to the message (one per device of yours that sent it) and prints each redaction.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Argument var key: String
    @Flag(help: "Take back your reaction KEY instead.") var remove = false
    @OptionGroup var options: PublishOptions

    func run() async throws {
        if remove {
            try await options.publishAll(in: roomID, global) { node in
                try node.removeReaction(roomID, eventID: try node.resolveEventID(eventID, in: roomID), key: key)
            }
        } else {
            try await options.publish(in: roomID, global) { node in
                try node.react(roomID, eventID: try node.resolveEventID(eventID, in: roomID), key: key)
            }
        }
    }
}

struct Redact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete a message, edit or reaction: its content is stripped everywhere.",
        discussion: "EVENT_ID may be the start of the id's last part, as `parley log` shows it.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Option(help: "Why; recorded in the redaction.") var reason: String?
    @Flag(help: "When a device copied the id and the redaction would hide every event carrying it, redact anyway.")
    var allCopies = false
    @OptionGroup var options: PublishOptions

    func run() async throws {
        try await options.publish(in: roomID, global) { node in
            try node.redact(roomID, eventID: try node.resolveEventID(eventID, in: roomID), reason: reason, allCopies: allCopies)
        }
    }
}

struct Read: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a receipt: read (or with --delivered, received) up to an event.",
        discussion: """
            EVENT_ID may be the start of the id's last part, as `parley log` shows it. The room's unread count starts \
            after it. When this device's read receipts are off in the room, nothing is sent.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @Argument var eventID: String
    @Flag(help: "A delivered receipt instead of a read one.") var delivered = false
    @OptionGroup var options: PublishOptions

    func run() async throws {
        try await options.publishAll(in: roomID, global) { node in
            let target = try node.resolveEventID(eventID, in: roomID)
            if delivered { return [try node.receipt(roomID, eventID: target, kind: .delivered)] }
            guard let receipt = try node.markRead(roomID, eventID: target, paced: false) else {
                printError("note: read receipts are off in \(roomID) (parley room read-receipts \(roomID) on): marked read on this node only.")
                return []
            }
            return [receipt]
        }
    }
}

/// `--limit N` of the commands that list: a positive count.
struct LimitOption: ParsableArguments {
    // Unconditional, so that `--limit -1` reaches the check below rather than reading as an unknown option `-1`.
    @Option(parsing: .unconditional, help: "At most this many, the newest.") var limit = 50

    func validate() throws {
        guard limit > 0 else { throw ValidationError("--limit must be at least 1; it was \(limit).") }
    }
}

struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the room's resolved timeline, oldest first.",
        discussion: "Each line: time (local, with its UTC offset), sender, text, markers, event id; further lines of a message are indented.")
    @OptionGroup var global: GlobalOptions
    @Argument var roomID: String
    @OptionGroup var limit: LimitOption
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print the items as a JSON array.") var json = false

    func run() throws {
        let node = try global.node()
        try failing {
            let items = try node.timeline(roomID, limit: limit.limit)
            let marks = try node.deliveryMarks(roomID, items: items)
            if json {
                printJSON(
                    .array(
                        items.map { item in
                            guard let mark = marks[item.eventID], var object = JSONOutput.item(item).objectValue else { return JSONOutput.item(item) }
                            object["delivery"] = JSONOutput.deliveryMark(mark)
                            return .object(object)
                        }))
            } else {
                let text = TimelineText(node: node, time: time)
                for item in items { try text.lines(item, mark: marks[item.eventID]).forEach(output) }
            }
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
        let standardOutput = FileHandle.standardOutput
        var buffer: [UInt8] = []
        try failing {
            _ = try node.roomState(roomID)
            try node.forEachEvent(roomID) { wire in
                buffer += wire
                buffer.append(0x0A)
                if buffer.count > 1 << 16 {
                    standardOutput.write(Data(buffer))
                    buffer.removeAll(keepingCapacity: true)
                }
            }
        }
        standardOutput.write(Data(buffer))
    }
}

/// A room's line in the summary of `parley verify` and `parley bucket verify`.
func describe(_ room: AuditReport.RoomSummary) -> String {
    let joined = room.state.joinedMembers.map(\.userID).joined(separator: ", ")
    return "room \(room.roomID): \(room.events) chained events, \(room.accepted) authorized, \(room.forks) forks; members: \(joined.isEmpty ? "none" : joined)"
}

/// Opens `path` for reading, or standard input for `nil` or `-`.
/// - Throws: ``ClientError`` naming the file and the reason.
func openInput(_ path: String?) throws -> Int32 {
    guard let path, path != "-" else { return 0 }
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw ClientError(.io, "Cannot open \(path): \(String(cString: strerror(errno))).") }
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
    @OptionGroup var time: TimeOptions
    @Flag var json = false

    func run() throws {
        let node = try global.node()
        var reader = JSONLReader(descriptor: try failing { try openInput(file) })
        let summary = try failing { try node.importEvents(from: &reader) { printError($0) } }
        if json {
            printJSON([
                "accepted": .integer(Int64(summary.accepted)), "duplicates": .integer(Int64(summary.duplicates)),
                "unauthorized": .integer(Int64(summary.unauthorized)), "held_back": .integer(Int64(summary.heldBack)),
                "rejected": .integer(Int64(summary.rejected)), "cannot_open": .integer(Int64(summary.cannotOpen)),
            ])
        } else {
            output(
                "\(summary.lines) lines: \(summary.accepted) accepted, \(summary.duplicates) already held, \(summary.unauthorized) not authorized, \(summary.heldBack) held back, \(summary.rejected) rejected"
                    + (summary.cannotOpen > 0 ? "; \(summary.cannotOpen) accepted but could not be opened" : ""))
        }
        if !summary.isClean { throw ExitCode(1) }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit events (JSONL) without importing them: signatures, chains, forks, gaps and room state.",
        discussion: """
            Exits 0 only if nothing is wrong; warnings (events dated far ahead of this device's clock) do not count. \
            Given a delivery proof (parley receipts EVENT_ID --export FILE), checks it instead: that its events verify and \
            chain, that the message and its receipts are authorized in the room they replay, and which devices' signed \
            receipts cover the message. Where this node holds the room, the proof must be about that room.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A JSONL file or a delivery proof; standard input if omitted or '-'.") var file: String?
    @OptionGroup var time: TimeOptions
    @Flag var json = false

    func run() throws {
        var reader = JSONLReader(descriptor: try failing { try openInput(file) })
        let first = try failing { try reader.next() }
        if case .line(_, let bytes)? = first, DeliveryProofHeader.isClaimed(by: bytes) {
            return try checkProof(header: bytes, reader: &reader)
        }
        let report = try failing { try Auditor.audit(&reader, nowMs: Node.systemClock(), firstLine: first) }
        if json {
            printJSON([
                "lines": .integer(Int64(report.lines)),
                "problems": .array(report.problems.map { ["line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)] }),
                "warnings": .array(report.warnings.map { ["line": $0.line.map { .integer(Int64($0)) } ?? .null, "message": .string($0.message)] }),
                "rooms": .array(report.rooms.map(JSONOutput.auditedRoom)),
            ])
        } else {
            for problem in report.problems { output((problem.line.map { "line \($0): " } ?? "") + problem.message) }
            for warning in report.warnings { output("warning: " + (warning.line.map { "line \($0): " } ?? "") + warning.message) }
            for room in report.rooms { output(describe(room)) }
            output(report.isClean ? "OK: \(report.lines) lines, no problems" : "FAILED: \(report.problems.count) problem(s) in \(report.lines) lines")
        }
        if !report.isClean { throw ExitCode(1) }
    }
}

struct Receipts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the signed receipts that cover a message; with --export, write them as a delivery proof.",
        discussion: """
            EVENT_ID may be given as ROOM SHORT_ID, as `parley log` shows it. A delivery proof holds the message, the \
            earliest receipt of each other device and kind that covers it, the room's state and the chains that link \
            them (other events stripped of their content), so that `parley verify FILE` checks it anywhere. In an \
            encrypted room it carries the keys that open the message and its receipts, and nothing else; \
            --keep-sealed leaves the message's content sealed.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A message's id; or the room, then the start of the id's last part.") var references: [String]
    @Option(help: "Write a delivery proof to this file (mode 0600; an existing file is not replaced).") var export: String?
    @Flag(help: "With --export: do not give the message's key, only its receipts'.") var keepSealed = false
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print as JSON.") var json = false

    func validate() throws {
        guard (1...2).contains(references.count) else { throw ValidationError("Give the message's whole id, or ROOM and the start of the id.") }
        if keepSealed && export == nil { throw ValidationError("--keep-sealed goes with --export FILE.") }
    }

    func run() throws {
        let node = try global.node()
        let (_, eventID) = try failing { try resolveMessageReference(references, node: node, command: "receipts") }
        let receipts: [ReceiptCoverage]
        var lineCount = 0
        if let export {
            let proof = try failing { try node.deliveryProof(eventID: eventID, keepSealed: keepSealed) }
            try failing { try node.home.createFile(atPath: export, contents: proof.lines.flatMap { $0 + [0x0A] }, mode: 0o600) }
            (receipts, lineCount) = (proof.receipts, proof.lines.count)
        } else {
            receipts = try failing { try node.coveringReceipts(eventID: eventID).receipts }
        }
        if json {
            var object = JSONObject([
                "event_id": .string(eventID),
                "receipts": .array(
                    receipts.map {
                        [
                            "user_id": .string($0.readerID), "device_key": .string($0.readerKey), "kind": .string($0.kind.rawValue),
                            "at_ms": .integer($0.timestampMs), "receipt_event_id": .string($0.receiptEventID),
                        ]
                    }),
            ])
            if let export { object["exported"] = .string(export) }
            return printJSON(.object(object))
        }
        for receipt in receipts {
            output(
                "\(receipt.kind == .read ? "read" : "delivered") by \(receipt.readerID) device \(receipt.readerKey.prefix(12))… at \(time.format(receipt.timestampMs)) (receipt \(receipt.receiptEventID))"
            )
        }
        if receipts.isEmpty { output("no other device's receipt covers \(eventID) yet") }
        if let export { output("Wrote a delivery proof of \(eventID) (\(lineCount) lines) to \(export); check it with parley verify \(export)") }
    }
}

extension Verify {
    func checkProof(header: [UInt8], reader: inout JSONLReader) throws {
        let report = try failing { try DeliveryProofChecker.check(headerLine: header, events: &reader) }
        // Where this node holds the room too, the proof must be about that room, not one made up under its id.
        var problems = report.problems
        // With no node here there is nothing to compare with; a node that cannot be read must not pass the proof.
        let home = global.parleyHome
        if let roomID = report.header?.roomID, let creation = report.creation, FileManager.default.fileExists(atPath: home.storePath) {
            do {
                let node = try Node(home: home)
                if try node.roomIDs().contains(roomID), let known = try node.roomState(roomID).creation, known.hash != creation.hash {
                    problems.append(
                        "this node holds room \(roomID) with another creation (\(known.hash.prefix(16))…, not \(creation.hash.prefix(16))…): the proof is about another room under the same id"
                    )
                }
            } catch {
                problems.append("cannot compare the proof with this node's room \(roomID): \(ClientError(describing: error).message)")
            }
        }
        let isValid = report.isValid && problems.count == report.problems.count
        if json {
            printJSON(JSONOutput.deliveryProof(report, problems: problems, isValid: isValid))
        } else {
            if let event = report.event {
                output("delivery proof of \(event.eventID) by \(event.senderID) (device \(event.senderKey)) at \(time.format(event.timestampMs))")
                if let creation = report.creation {
                    output("room \(event.roomID), created by \(creation.creatorID) (create \(creation.hash))")
                }
                if let opened = report.opened, case .string(let body)? = opened.content["body"] {
                    output("text: \(body)")
                } else if report.opened == nil {
                    output("content: sealed (the proof does not carry its key)")
                }
            }
            for confirmation in report.confirmations {
                output(
                    "\(confirmation.kind == .read ? "read" : "delivered") by \(confirmation.readerID) (device \(confirmation.readerKey)) at \(time.format(confirmation.timestampMs)) (receipt \(confirmation.receiptEventID))"
                )
            }
            for problem in problems { output(problem) }
            output(
                isValid
                    ? "OK: \(report.lines) lines; the receipts above are signed by the devices named, which were members of the room when they signed"
                    : "FAILED: this is not a valid delivery proof (\(max(problems.count, 1)) problem(s) in \(report.lines) lines)")
        }
        if !isValid { throw ExitCode(1) }
    }
}

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Full-text search of message text (current versions, redacted ones excluded).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Words that must all appear.") var query: String
    @Option(help: "Only this room.") var room: String?
    @OptionGroup var limit: LimitOption
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print the results as a JSON array of log items with room_id.") var json = false

    func run() throws {
        let node = try global.node()
        try failing {
            let hits = try node.search(query, roomID: room, limit: limit.limit)
            if json {
                printJSON(
                    .array(
                        hits.map { hit in
                            var item = JSONOutput.item(hit.item).objectValue!
                            item["room_id"] = .string(hit.roomID)
                            return .object(item)
                        }))
            } else {
                let text = TimelineText(node: node, time: time)
                for hit in hits { try text.lines(hit.item, prefix: "\(hit.roomID)  ").forEach(output) }
            }
        }
    }
}

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find events by room, sender, type, time, priority, file or text, room by room in each room's order, a page at a time.",
        discussion: """
            Every filter given must hold. Times are Unix milliseconds, a date (2026-12-05, midnight UTC) or a UTC time \
            (2026-12-05T10:30Z); both ends are included. Sealed events match by the type and text inside once this node \
            opened them. When more events match than --limit, the last line gives the --cursor that reads on; a cursor \
            stays valid, and pages neither repeat nor skip events. The local API answers the same at GET /v1/query.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this room.") var room: String?
    @Option(help: "Only events of this user id.") var sender: String?
    @Option(help: "Only this event type: m.room.message, or message, edit, reaction, redaction, receipt, member, name, topic…")
    var type: String?
    @Option(help: "Only events at or after this time.") var since: String?
    @Option(help: "Only events at or before this time.") var until: String?
    @Option(help: "Only messages of this priority: low, normal, high or urgent.") var priority: String?
    @Flag(help: "Only messages that share a file.") var hasFile = false
    @Option(help: "Only messages whose current text has all these words.") var text: String?
    @Option(help: "At most this many events (1–1000).") var limit = 50
    @Option(help: "Read on from the page that gave this cursor.") var cursor: String?
    @OptionGroup var time: TimeOptions
    @Flag(help: "Print {\"events\": [...], \"next_cursor\"} as JSON.") var json = false

    func run() throws {
        let node = try global.node()
        let named: [(String, String?)] = [
            ("room", room), ("sender", sender), ("type", type), ("since", since), ("until", until), ("priority", priority),
            ("has_file", hasFile ? "true" : nil),
            ("text", text), ("limit", String(limit)), ("cursor", cursor),
        ]
        let (hits, next) = try failing {
            try node.query(EventQuery(parameters: named.compactMap { name, value in value.map { (name, $0) } }))
        }
        if json {
            return printJSON(["events": .array(hits.map(JSONOutput.queryHit)), "next_cursor": next.map { .string($0.text) } ?? .null])
        }
        for hit in hits {
            let event = hit.event
            var line = "\(event.roomID)  \(time.format(event.timestampMs))  \(event.senderID)  \(hit.type)"
            if hit.content == nil {
                line += "  (sealed; this device cannot open it)"
            } else if case .string(let body)? = hit.content?["body"] {
                line += "  \(body)"
            }
            output(line + "  \(event.eventID)")
        }
        if let next { output("more: parley query … --cursor \(next.text)") }
        if hits.isEmpty { output("no events match") }
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
    @OptionGroup var limit: LimitOption
    @OptionGroup var time: TimeOptions
    @Flag(help: "Empty the log instead of showing it.") var clear = false
    @Flag(help: "Print the entries as JSON.") var json = false

    func run() throws {
        let node = try global.node()
        if clear {
            let removed = try failing { try node.clearRejectedEvents() }
            if json {
                printJSON(["removed": .integer(Int64(removed))])
            } else {
                output("Removed \(removed) \(removed == 1 ? "entry" : "entries") from the rejected-events log.")
            }
            return
        }
        let entries = try failing { try node.rejectedEvents(limit: limit.limit) }
        if json {
            printJSON(
                .array(
                    entries.map { entry in
                        [
                            "received_ms": .integer(entry.receivedMs), "room_id": entry.roomID.map(JSONValue.string) ?? .null,
                            "event_id": entry.eventID.map(JSONValue.string) ?? .null, "reason": .string(entry.reason),
                        ]
                    }))
        } else {
            for entry in entries {
                output("\(time.format(entry.receivedMs))  \(entry.eventID ?? entry.roomID ?? "-")  \(entry.reason)")
            }
        }
    }
}
