import ParleyCore
import ParleyStore

/// What an audit of a JSONL export found.
public struct AuditReport: Sendable {
    public struct Problem: Sendable {
        /// 1-based line number in the input, when the problem belongs to one line.
        public var line: Int?
        public var message: String
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

/// Audits events without storing them: signatures, chains, forks, gaps and room state (`parley verify`).
public enum Auditor {
    /// Reads every line of `reader` and checks it against the others.
    public static func audit(_ reader: inout JSONLReader) throws -> AuditReport {
        var report = AuditReport()
        var ledger = Ledger()
        var lineOf: [String: Int] = [:]
        var batch: [(Int, [UInt8])] = []
        var batchBytes = 0

        func flush() {
            let results = EventStore.verifyInParallel(batch.map(\.1))
            for ((line, _), result) in zip(batch, results) {
                switch result {
                case .failure(let error):
                    report.problems.append(.init(line: line, message: "invalid event: \(error.message)"))
                case .success(let event):
                    if lineOf[event.hash] == nil { lineOf[event.hash] = line }
                    for (released, outcome) in ledger.ingest(event) {
                        let at = lineOf[released.hash] ?? line
                        switch outcome {
                        case .fork:
                            report.problems.append(.init(line: at, message: "fork: device \(released.event.senderKey.prefix(12))… of \(released.event.senderID) signed two different events at seq \(released.event.seq)"))
                        case .rejected(let reason):
                            report.problems.append(.init(line: at, message: "chain: \(reason)"))
                        case .chained, .duplicate, .awaitingPredecessor:
                            break
                        }
                    }
                }
            }
            batch.removeAll(keepingCapacity: true)
            batchBytes = 0
        }

        while let next = try reader.next() {
            switch next {
            case .line(let number, let bytes):
                report.lines = number
                batch.append((number, bytes))
                batchBytes += bytes.count
                if batch.count == 4096 || batchBytes >= Node.importBatchBytes { flush() }
            case .tooLong(let number, let length):
                report.lines = number
                report.problems.append(.init(line: number, message: "line of \(length) bytes is longer than the limit of \(reader.maxLineBytes)"))
            }
        }
        flush()

        for (event, seq) in ledger.heldBack.sorted(by: { (lineOf[$0.0.hash] ?? 0) < (lineOf[$1.0.hash] ?? 0) }) {
            report.problems.append(.init(line: lineOf[event.hash], message: "gap: seq \(seq) of device \(event.event.senderKey.prefix(12))… (\(event.event.senderID)) is missing, so this event cannot be chained"))
        }
        for roomID in ledger.rooms.keys.sorted() {
            let events = ledger.rooms[roomID] ?? []
            let replay = ledger.replay(roomID: roomID)
            var accepted = 0
            for event in events.sorted(by: { (lineOf[$0.hash] ?? 0) < (lineOf[$1.hash] ?? 0) }) {
                switch replay.verdicts[event.hash] {
                case .accepted?: accepted += 1
                case .rejected(let reason)?:
                    report.problems.append(.init(line: lineOf[event.hash], message: "not authorized: \(reason)"))
                case .awaitingTarget(let target)?:
                    report.problems.append(.init(line: lineOf[event.hash], message: "refers to \(target), which is not in the input"))
                case nil: break
                }
            }
            let forks = ledger.forks.filter { (try? $0.verify().roomID) == roomID }.count
            report.rooms.append(.init(roomID: roomID, events: events.count, accepted: accepted, state: replay.state, forks: forks))
        }
        report.problems.sort { ($0.line ?? Int.max) < ($1.line ?? Int.max) }
        return report
    }
}
