import ParleyCore
import ParleyStore
import ParleySync

/// What an audit of a JSONL export (or of a bucket's files) found.
public struct AuditReport: Sendable {
    public struct Problem: Sendable {
        /// The object the line came from, when auditing a bucket.
        public var file: String?
        /// 1-based line number in the input, when the problem belongs to one line.
        public var line: Int?
        public var message: String

        public init(file: String? = nil, line: Int?, message: String) {
            self.file = file
            self.line = line
            self.message = message
        }

        /// "file, line N: message".
        public var text: String {
            let place = [file, line.map { "line \($0)" }].compactMap { $0 }.joined(separator: ", ")
            return place.isEmpty ? message : "\(place): \(message)"
        }
    }

    public struct RoomSummary: Sendable {
        public var roomID: String
        public var events: Int
        public var accepted: Int
        public var state: RoomState
        public var forks: Int
    }

    public var lines = 0
    public var problems: [Problem] = []
    /// Findings that are no fault: events dated far ahead of the auditor's clock.
    public var warnings: [Problem] = []
    public var rooms: [RoomSummary] = []
    public var isClean: Bool { problems.isEmpty }
}

/// Where an audited line came from.
public struct LineOrigin: Sendable, Hashable, Comparable {
    public var file: String?
    public var line: Int

    public init(file: String? = nil, line: Int) {
        self.file = file
        self.line = line
    }

    public static func < (a: LineOrigin, b: LineOrigin) -> Bool { (a.file ?? "", a.line) < (b.file ?? "", b.line) }
}

/// Audits events without storing them: signatures, chains, forks, gaps and room state (`parley verify`,
/// `parley bucket verify`). Feed it lines with ``add(_:)``, then ``finish()``. Problems of single lines are bounded per
/// file (``LineProblems``): the first of each reason word for word, the rest counted.
public struct Audit {
    var report = AuditReport()
    var ledger = Ledger()
    /// Where each event was first seen, by hash.
    var origins: [String: LineOrigin] = [:]
    /// Events seen more than once (re-uploaded under another name, or repeated).
    public private(set) var repeats = 0
    /// Problems and warnings of single lines, per file (`nil`: the one input of `parley verify`).
    var lineProblems: [String?: LineProblems] = [:]
    var lineWarnings: [String?: LineProblems] = [:]
    /// The create each room is pinned to (its metadata.json names it): the replay refuses every other create, as a
    /// node that joined the room does (docs/PROTOCOL.md §8.4.2, §13.2).
    public var pinnedCreates: [String: String] = [:]
    /// The auditor's clock (Unix ms), to flag events dated far ahead of it; `nil`: no flags.
    let nowMs: Int64?

    public init(nowMs: Int64? = nil) {
        self.nowMs = nowMs
    }

    /// Verifies a batch of lines (in parallel) and chains the events.
    public mutating func add(_ batch: [(origin: LineOrigin, bytes: [UInt8])]) {
        add(batch.map(\.origin), verified: VerifiedEvent.verifyInParallel(batch.map(\.bytes)))
    }

    /// Chains lines already verified: one result per origin.
    public mutating func add(_ lines: [LineOrigin], verified results: [Result<VerifiedEvent, EventError>]) {
        report.lines += lines.count
        for (origin, result) in zip(lines, results) {
            switch result {
            case .failure(let error):
                problem(origin, "invalid event: \(error.message)")
            case .success(let event):
                if let nowMs, let note = aheadOfClock(timestampMs: event.event.timestampMs, nowMs: nowMs) {
                    lineWarnings[origin.file, default: LineProblems()].add(note, line: origin.line)
                }
                if origins[event.hash] == nil { origins[event.hash] = origin } else { repeats += 1 }
                for (released, outcome) in ledger.ingest(event) {
                    let at = origins[released.hash] ?? origin
                    switch outcome {
                    case .fork:
                        problem(
                            at,
                            "fork: device \(released.event.senderKey.prefix(12))… of \(released.event.senderID) signed two different events at seq \(released.event.seq)"
                        )
                    case .rejected(let reason):
                        problem(at, "chain: \(reason)")
                    case .chained, .duplicate, .awaitingPredecessor:
                        break
                    }
                }
            }
        }
    }

    /// Whether the audit has seen the event with this hash.
    public func holds(hash: String) -> Bool { origins[hash] != nil }

    /// Records a problem that is not about one event (a line too long, an unreadable file).
    public mutating func problem(_ origin: LineOrigin?, _ message: String) {
        guard let origin else {
            report.problems.append(.init(file: nil, line: nil, message: message))
            return
        }
        lineProblems[origin.file, default: LineProblems()].add(message, line: origin.line)
    }

    public mutating func problem(file: String, _ message: String) {
        report.problems.append(.init(file: file, line: nil, message: message))
    }

    /// Replays every room and reports gaps and unauthorized events.
    public func finish() -> AuditReport {
        var audit = self
        var rooms: [AuditReport.RoomSummary] = []
        let order: (LineOrigin?) -> LineOrigin = { $0 ?? LineOrigin(file: nil, line: 0) }
        for (event, seq) in ledger.heldBack.sorted(by: { order(origins[$0.0.hash]) < order(origins[$1.0.hash]) }) {
            audit.problem(
                origins[event.hash],
                "gap: seq \(seq) of device \(event.event.senderKey.prefix(12))… (\(event.event.senderID)) is missing, so this event cannot be chained")
        }
        for roomID in ledger.rooms.keys.sorted() {
            let events = ledger.rooms[roomID] ?? []
            let replay = RoomReplay(roomID: roomID, events: events, pinnedCreateHash: pinnedCreates[roomID])
            var accepted = 0
            for event in events.sorted(by: { order(origins[$0.hash]) < order(origins[$1.hash]) }) {
                let origin = origins[event.hash]
                switch replay.verdicts[event.hash] {
                case .accepted?: accepted += 1
                case .rejected(let reason)?: audit.problem(origin, "not authorized: \(reason)")
                case .awaitingTarget(let target)?: audit.problem(origin, "refers to \(target), which is not in the input")
                case nil: break
                }
            }
            for collision in ledger.collisions where collision.eventID.hasPrefix(roomID + "::") {
                let origin = origins[(try? Event.parse(collision.second))?.computeHash() ?? ""]
                audit.problem(
                    origin,
                    "event id \(collision.eventID) is carried by two different events (\(Audit.signers(of: collision))); both are kept and judged on their own")
            }
            let forks = ledger.forks.filter { (try? $0.verify().roomID) == roomID }.count
            rooms.append(.init(roomID: roomID, events: events.count, accepted: accepted, state: replay.state, forks: forks))
        }
        var report = audit.report
        report.rooms = rooms
        report.problems += Audit.flatten(audit.lineProblems)
        report.warnings = Audit.flatten(audit.lineWarnings)
        let byPlace: (AuditReport.Problem, AuditReport.Problem) -> Bool = { a, b in
            ((a.file ?? ""), (a.line ?? Int.max)) < ((b.file ?? ""), (b.line ?? Int.max))
        }
        report.problems.sort(by: byPlace)
        report.warnings.sort(by: byPlace)
        return report
    }

    /// "alice's device AbC… and mallory's device XyZ…", for a report.
    static func signers(of collision: EventIDCollision) -> String {
        [collision.first, collision.second].compactMap { try? Event.parse($0) }
            .map { "\($0.senderID)'s device \($0.senderKey.prefix(12))…" }.joined(separator: " and ")
    }

    /// Each file's shown problems, then its summaries (which belong to no one line).
    static func flatten(_ files: [String?: LineProblems]) -> [AuditReport.Problem] {
        files.flatMap { file, problems in
            problems.shown.map { AuditReport.Problem(file: file, line: $0.line, message: $0.problem) }
                + problems.summaries.map { AuditReport.Problem(file: file, line: nil, message: $0) }
        }
    }
}

public enum Auditor {
    /// Reads every line of `reader` and checks it against the others; gives up on an input whose first lines show it
    /// is not Parley events.
    /// - Parameters:
    ///   - nowMs: the auditor's clock, to flag events dated far ahead of it.
    ///   - firstLine: the input's first line when the caller already read it from `reader`.
    public static func audit(_ reader: inout JSONLReader, nowMs: Int64? = nil, firstLine: JSONLReader.Line? = nil) throws -> AuditReport {
        var audit = Audit(nowMs: nowMs)
        var screen = InputScreen()
        var origins: [LineOrigin] = []
        var lines: [[UInt8]] = []
        var batchBytes = 0
        var count = 0
        /// Verifies and adds the batch; returns false when the screen finds the input is not events.
        func flush() -> Bool {
            let verified = VerifiedEvent.verifyInParallel(lines)
            for (origin, result) in zip(origins, verified) {
                if case .failure(let error) = result {
                    screen.record(line: origin.line, problem: "invalid event: \(error.message)")
                } else {
                    screen.record(line: origin.line, problem: nil)
                }
            }
            if screen.isNotEvents { return false }
            audit.add(origins, verified: verified)
            origins.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
            batchBytes = 0
            return true
        }
        var pending = firstLine
        reading: while let next = try pending.take() ?? reader.next() {
            switch next {
            case .line(let number, let bytes):
                count = number
                origins.append(LineOrigin(line: number))
                lines.append(bytes)
                batchBytes += bytes.count
                if lines.count == 4096 || batchBytes >= InputBounds.batchBytes, !flush() { break reading }
            case .tooLong(let number, let length):
                count = number
                // The screen takes lines in order: what came before this one first.
                if !screen.sawEvent && !screen.isNotEvents && !flush() { break reading }
                let problem = "line of \(length) bytes is longer than the limit of \(reader.maxLineBytes)"
                screen.record(line: number, problem: problem)
                if screen.isNotEvents { break reading }
                audit.problem(LineOrigin(line: number), problem)
            }
        }
        if screen.isNotEvents || !flush() {
            var report = AuditReport()
            report.lines = screen.decidingLine ?? count
            report.problems = [.init(line: nil, message: "not Parley events: \(screen.verdict); not read further")]
            return report
        }
        var report = audit.finish()
        report.lines = count
        return report
    }
}
