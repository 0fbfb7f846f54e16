import ParleyCore
import ParleyStore

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
/// `parley bucket verify`). Feed it lines with ``add(_:)``, then ``finish()``.
public struct Audit {
    var report = AuditReport()
    var ledger = Ledger()
    /// Where each event was first seen, by hash.
    var origins: [String: LineOrigin] = [:]
    /// Events seen more than once (re-uploaded under another name, or repeated).
    public private(set) var repeats = 0

    public init() {}

    /// Verifies a batch of lines (in parallel) and chains the events.
    public mutating func add(_ batch: [(origin: LineOrigin, bytes: [UInt8])]) {
        report.lines += batch.count
        let results = EventStore.verifyInParallel(batch.map(\.bytes))
        for ((origin, _), result) in zip(batch, results) {
            switch result {
            case .failure(let error):
                problem(origin, "invalid event: \(error.message)")
            case .success(let event):
                if origins[event.hash] == nil { origins[event.hash] = origin } else { repeats += 1 }
                for (released, outcome) in ledger.ingest(event) {
                    let at = origins[released.hash] ?? origin
                    switch outcome {
                    case .fork:
                        problem(at, "fork: device \(released.event.senderKey.prefix(12))… of \(released.event.senderID) signed two different events at seq \(released.event.seq)")
                    case .rejected(let reason):
                        problem(at, "chain: \(reason)")
                    case .chained, .duplicate, .awaitingPredecessor:
                        break
                    }
                }
            }
        }
    }

    /// Records a problem that is not about one event (a line too long, an unreadable file).
    public mutating func problem(_ origin: LineOrigin?, _ message: String) {
        report.problems.append(.init(file: origin?.file, line: origin.map(\.line), message: message))
    }

    public mutating func problem(file: String, _ message: String) {
        report.problems.append(.init(file: file, line: nil, message: message))
    }

    /// Replays every room and reports gaps and unauthorized events.
    public func finish() -> AuditReport {
        var report = report
        let order: (LineOrigin?) -> LineOrigin = { $0 ?? LineOrigin(file: nil, line: 0) }
        for (event, seq) in ledger.heldBack.sorted(by: { order(origins[$0.0.hash]) < order(origins[$1.0.hash]) }) {
            let origin = origins[event.hash]
            report.problems.append(.init(file: origin?.file, line: origin?.line, message: "gap: seq \(seq) of device \(event.event.senderKey.prefix(12))… (\(event.event.senderID)) is missing, so this event cannot be chained"))
        }
        for roomID in ledger.rooms.keys.sorted() {
            let events = ledger.rooms[roomID] ?? []
            let replay = ledger.replay(roomID: roomID)
            var accepted = 0
            for event in events.sorted(by: { order(origins[$0.hash]) < order(origins[$1.hash]) }) {
                let origin = origins[event.hash]
                switch replay.verdicts[event.hash] {
                case .accepted?: accepted += 1
                case .rejected(let reason)?:
                    report.problems.append(.init(file: origin?.file, line: origin?.line, message: "not authorized: \(reason)"))
                case .awaitingTarget(let target)?:
                    report.problems.append(.init(file: origin?.file, line: origin?.line, message: "refers to \(target), which is not in the input"))
                case nil: break
                }
            }
            for collision in ledger.collisions where collision.eventID.hasPrefix(roomID + "::") {
                let origin = origins[(try? Event.parse(collision.second))?.computeHash() ?? ""]
                report.problems.append(
                    .init(
                        file: origin?.file, line: origin?.line,
                        message: "event id \(collision.eventID) is carried by two different events (\(Audit.signers(of: collision))); both are kept and judged on their own"))
            }
            let forks = ledger.forks.filter { (try? $0.verify().roomID) == roomID }.count
            report.rooms.append(.init(roomID: roomID, events: events.count, accepted: accepted, state: replay.state, forks: forks))
        }
        report.problems.sort { (a, b) in ((a.file ?? ""), (a.line ?? Int.max)) < ((b.file ?? ""), (b.line ?? Int.max)) }
        return report
    }

    /// "alice's device AbC… and mallory's device XyZ…", for a report.
    static func signers(of collision: EventIDCollision) -> String {
        [collision.first, collision.second].compactMap { try? Event.parse($0) }
            .map { "\($0.senderID)'s device \($0.senderKey.prefix(12))…" }.joined(separator: " and ")
    }
}

public enum Auditor {
    /// Reads every line of `reader` and checks it against the others.
    public static func audit(_ reader: inout JSONLReader) throws -> AuditReport {
        var audit = Audit()
        var batch: [(origin: LineOrigin, bytes: [UInt8])] = []
        var batchBytes = 0
        var lines = 0
        while let next = try reader.next() {
            switch next {
            case .line(let number, let bytes):
                lines = number
                batch.append((LineOrigin(line: number), bytes))
                batchBytes += bytes.count
                if batch.count == 4096 || batchBytes >= Node.importBatchBytes {
                    audit.add(batch)
                    batch.removeAll(keepingCapacity: true)
                    batchBytes = 0
                }
            case .tooLong(let number, let length):
                lines = number
                audit.problem(LineOrigin(line: number), "line of \(length) bytes is longer than the limit of \(reader.maxLineBytes)")
            }
        }
        audit.add(batch)
        var report = audit.finish()
        report.lines = lines
        return report
    }
}
