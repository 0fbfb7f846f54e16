import Foundation
import ParleyCore
import ParleyStore
import ParleySync

/// Counts of what an import did with its lines.
public struct ImportSummary: Sendable, Equatable {
    public var accepted = 0
    public var duplicates = 0
    public var unauthorized = 0
    public var heldBack = 0
    public var rejected = 0
    /// Accepted sealed or key events that can never be opened on this device (docs/PROTOCOL.md §14.3): altered, or
    /// sealed for another device. Counted among `accepted` too.
    public var cannotOpen = 0

    public var lines: Int { accepted + duplicates + unauthorized + heldBack + rejected }
    /// Whether every line ended up stored and authorized, and everything sealed for this device opened.
    public var isClean: Bool { unauthorized == 0 && heldBack == 0 && rejected == 0 && cannotOpen == 0 }
}

extension Node {
    /// Imports wire-form events, one per line, from `reader`. Batches are verified on every core while a worker
    /// stores the one before (``BatchPipeline``), one transaction each, so neither side waits for the other in the
    /// common case.
    ///
    /// Hostile or mistaken input costs little: an input whose first lines are all invalid is refused at once, only
    /// the first invalid lines go to the rejected-events log (the rest are counted in one entry), and only the first
    /// lines of each reason are reported, the rest counted (``InputBounds``).
    /// - Parameter report: called with a message per line that was not accepted, or is worth a warning (an event
    ///   dated far ahead of this device's clock, a sealed event this device cannot read), naming the line and the
    ///   reason; then with a summary per reason that had more lines than were shown.
    /// - Throws: ``ClientError`` when the input is not Parley events; nothing was imported then.
    public func importEvents(from reader: inout JSONLReader, report: (String) -> Void) throws -> ImportSummary {
        var summary = ImportSummary()
        var problems = LineProblems()
        func note(_ problem: String, line: Int) {
            if problems.add(problem, line: line) { report("line \(line): \(problem)") }
        }
        var screen = InputScreen()
        var invalidLogged = 0
        var invalidUnlogged = 0
        var heldBack: [(line: Int, eventID: String, hash: String)] = []
        var sealedWaiting: [(line: Int, eventID: String)] = []
        let written = WrittenBatches()

        func reject(_ reason: String, line: Int) {
            summary.rejected += 1
            note("rejected: \(reason)", line: line)
        }

        /// Counts and reports the batches the worker has stored, in order.
        func collect() throws {
            for (batch, stored) in written.takeAll() {
                // Invalid lines kept from the store are reported in line order with the others.
                var skipped = batch.skipped[...]
                for (index, outcome) in stored.outcomes.enumerated() {
                    let line = batch.numbers[index]
                    while let first = skipped.first, first.line < line {
                        reject(first.reason, line: first.line)
                        skipped = skipped.dropFirst()
                    }
                    switch outcome {
                    case .accepted: summary.accepted += 1
                    case .duplicate: summary.duplicates += 1
                    case .unauthorized(let reason):
                        summary.unauthorized += 1
                        note("not authorized: \(reason)", line: line)
                    case .heldBack:
                        if let event = stored.events[index] { heldBack.append((line, event.eventID, event.hash)) }
                    case .rejected(let reason):
                        reject(reason, line: line)
                    }
                }
                for first in skipped { reject(first.reason, line: first.line) }
                let sealed = batch.sealed.filter { stored.outcomes[$0.index] == .accepted }
                guard !sealed.isEmpty else { continue }
                let opened = try store.openingOutcomes(eventIDs: sealed.map(\.eventID))
                for item in sealed {
                    switch opened[item.eventID] {
                    case .failed(let reason)?:
                        summary.cannotOpen += 1
                        note("could not be opened: \(reason)", line: item.line)
                    case .waitingForKey?: sealedWaiting.append((item.line, item.eventID))
                    case .opened?, nil: break
                    }
                }
                for collision in stored.collisionProblems() {
                    if let line = collision.input.map({ batch.numbers[$0] }) {
                        note(collision.message, line: line)
                    } else if problems.add(collision.message, line: nil) {
                        report(collision.message)
                    }
                }
            }
        }

        var numbers: [Int] = []
        var lines: [[UInt8]] = []
        var batchBytes = 0
        func flush(_ put: (StagedBatch) throws -> Void) throws {
            guard !lines.isEmpty else { return }
            let verified = VerifiedEvent.verifyInParallel(lines)
            var batch = PendingBatch()
            var batchVerified: [Result<VerifiedEvent, EventError>] = []
            var batchLines: [[UInt8]] = []
            let now = clock()
            for (index, result) in verified.enumerated() {
                let line = numbers[index]
                switch result {
                case .failure(let error):
                    screen.record(line: line, problem: "rejected: \(error.message)")
                    // Past the first ones, invalid lines are refused here: the store would only log them.
                    if invalidLogged == InputBounds.loggedInvalidLines {
                        invalidUnlogged += 1
                        batch.skipped.append((line, error.message))
                        continue
                    }
                    invalidLogged += 1
                case .success(let event):
                    screen.record(line: line, problem: nil)
                    if let ahead = aheadOfClock(timestampMs: event.event.timestampMs, nowMs: now) { note("warning: \(ahead)", line: line) }
                    if event.event.type == EventType.encrypted || event.event.type == EventType.roomKey {
                        batch.sealed.append((batchLines.count, line, event.event.eventID))
                    }
                }
                batch.numbers.append(line)
                batchVerified.append(result)
                batchLines.append(lines[index])
            }
            if screen.isNotEvents { throw notEvents(screen) }
            try collect()
            try put(StagedBatch(pending: batch, verified: batchVerified, lines: batchLines, receivedMs: now))
            numbers.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
            batchBytes = 0
        }

        let store = store
        // After a failed batch the import is over: the pipeline stops, and later batches are not stored.
        try BatchPipeline<StagedBatch>.run(depth: 1) { next in
            while let staged = try next() {
                written.append(staged.pending, try store.ingest(verified: staged.verified, lines: staged.lines, receivedMs: staged.receivedMs))
            }
        } produce: { put in
            while let next = try reader.next() {
                switch next {
                case .line(let number, let bytes):
                    numbers.append(number)
                    lines.append(bytes)
                    batchBytes += bytes.count
                    if lines.count == InputBounds.batchLines || batchBytes >= InputBounds.batchBytes { try flush(put) }
                case .tooLong(let number, let length):
                    // The screen takes lines in order: what came before this one first.
                    if !screen.sawEvent { try flush(put) }
                    let problem = "\(length) bytes, longer than the limit of \(reader.maxLineBytes)"
                    if screen.record(line: number, problem: "rejected: \(problem)") { throw notEvents(screen) }
                    reject(problem, line: number)
                }
            }
            try flush(put)
        }
        try collect()
        if invalidUnlogged > 0 {
            try store.logRejection(
                roomID: nil, reason: "\(grouped(invalidUnlogged)) more invalid lines of this input were refused; not kept here one by one", receivedMs: clock())
        }

        // Held-back events may have been released by later lines.
        let final = try store.outcomes(of: heldBack.map { ($0.eventID, $0.hash) })
        for (line, _, hash) in heldBack {
            switch final[hash] {
            case .accepted?: summary.accepted += 1
            case .unauthorized(let reason)?:
                summary.unauthorized += 1
                note("not authorized: \(reason)", line: line)
            case .heldBack(let reason)?:
                summary.heldBack += 1
                note("held back: \(reason)", line: line)
            default:
                summary.rejected += 1
                note("rejected when its chain was completed (see the rejected-events log)", line: line)
            }
        }
        // A key that came later in the input may have opened what waited for it.
        let opened = try store.openingOutcomes(eventIDs: sealedWaiting.map(\.eventID))
        for (line, eventID) in sealedWaiting {
            switch opened[eventID] {
            case .waitingForKey?: note("sealed with a key this device does not hold yet; it can be read once the key arrives", line: line)
            case .failed(let reason)?:
                summary.cannotOpen += 1
                note("could not be opened: \(reason)", line: line)
            case .opened?, nil: break
            }
        }
        for line in problems.summaries { report(line) }
        return summary
    }

    func notEvents(_ screen: InputScreen) -> ClientError {
        ClientError(
            .invalidArgument, "The input does not look like Parley events: \(screen.verdict). Nothing was imported.",
            remedy: "Import a file written by `parley events`: JSON Lines, one event per line.")
    }
}

/// A verified batch on its way to the store, and what the importing thread needs of it afterwards.
struct StagedBatch: @unchecked Sendable {
    var pending: PendingBatch
    var verified: [Result<VerifiedEvent, EventError>]
    var lines: [[UInt8]]
    var receivedMs: Int64
}

/// What the importing thread knows of a batch it gave the store.
struct PendingBatch {
    /// The line number of each line handed to the store.
    var numbers: [Int] = []
    /// Invalid lines not handed to the store (past the ones it logs), with the reason.
    var skipped: [(line: Int, reason: String)] = []
    /// Sealed and key events handed to the store: position in the batch, line, event id.
    var sealed: [(index: Int, line: Int, eventID: String)] = []
}

/// Batches the worker has stored, handed back to the importing thread in order.
final class WrittenBatches: @unchecked Sendable {
    private let lock = NSLock()
    private var batches: [(PendingBatch, IngestReport)] = []

    func append(_ batch: PendingBatch, _ report: IngestReport) {
        lock.withLock { batches.append((batch, report)) }
    }

    func takeAll() -> [(PendingBatch, IngestReport)] {
        lock.withLock {
            defer { batches.removeAll() }
            return batches
        }
    }
}
