import Foundation
import ParleyCore
import ParleyStore

/// Counts of what an import did with its lines.
public struct ImportSummary: Sendable, Equatable {
    public var accepted = 0
    public var duplicates = 0
    public var unauthorized = 0
    public var heldBack = 0
    public var rejected = 0

    public var lines: Int { accepted + duplicates + unauthorized + heldBack + rejected }
    /// Whether every line ended up stored and authorized.
    public var isClean: Bool { unauthorized == 0 && heldBack == 0 && rejected == 0 }
}

extension Node {
    /// Lines per transaction: large enough to amortize the commit's fsync, small enough to keep memory flat.
    static let importBatchLines = 2048
    /// A batch also ends at this many bytes of input, so hostile 1 MiB lines cannot make three batches in flight
    /// hold gigabytes.
    static let importBatchBytes = 8 << 20

    /// Imports wire-form events, one per line, from `reader`. Batches are verified on every core while a writer
    /// thread stores earlier ones; verification runs up to two batches ahead, so neither side waits for the other
    /// in the common case.
    /// - Parameter report: called with one message per line that was not accepted, naming the line and the reason.
    public func importEvents(from reader: inout JSONLReader, report: (String) -> Void) throws -> ImportSummary {
        var summary = ImportSummary()
        var heldBack: [(line: Int, eventID: String, hash: String)] = []
        let writer = DispatchQueue(label: "parley.import.writer")
        let group = DispatchGroup()
        let slots = DispatchSemaphore(value: 2)
        let written = WrittenBatches()
        // However this ends, no batch is still being written when it returns.
        defer { group.wait() }

        /// Counts and reports the batches the writer has finished, in order.
        func collect() throws {
            for (numbers, result) in written.takeAll() {
                let batch = try result.get()
                for (index, outcome) in batch.outcomes.enumerated() {
                    let line = numbers[index]
                    switch outcome {
                    case .accepted: summary.accepted += 1
                    case .duplicate: summary.duplicates += 1
                    case .unauthorized(let reason):
                        summary.unauthorized += 1
                        report("line \(line): not authorized: \(reason)")
                    case .heldBack:
                        if let event = batch.events[index] { heldBack.append((line, event.eventID, event.hash)) }
                    case .rejected(let reason):
                        summary.rejected += 1
                        report("line \(line): rejected: \(reason)")
                    }
                }
                batch.collisionNotes(lineNumbers: numbers).forEach(report)
            }
        }

        var numbers: [Int] = []
        var lines: [[UInt8]] = []
        var batchBytes = 0
        func flush() throws {
            guard !lines.isEmpty else { return }
            let verified = EventStore.verifyInParallel(lines)
            slots.wait()
            try collect()
            let batchNumbers = numbers
            let batchLines = lines
            let receivedMs = clock()
            let store = self.store
            writer.async(group: group) {
                // After a failed batch the import is over: later batches are not written.
                if !written.hasFailed {
                    written.append(batchNumbers, Result { try store.ingest(verified: verified, lines: batchLines, receivedMs: receivedMs) })
                }
                slots.signal()
            }
            numbers.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
            batchBytes = 0
        }

        while let next = try reader.next() {
            switch next {
            case .line(let number, let bytes):
                numbers.append(number)
                lines.append(bytes)
                batchBytes += bytes.count
                if lines.count == Node.importBatchLines || batchBytes >= Node.importBatchBytes { try flush() }
            case .tooLong(let number, let length):
                summary.rejected += 1
                report("line \(number): rejected: \(length) bytes, longer than the limit of \(reader.maxLineBytes)")
            }
        }
        try flush()
        group.wait()
        try collect()

        // Held-back events may have been released by later lines.
        let final = try store.outcomes(of: heldBack.map { ($0.eventID, $0.hash) })
        for (line, _, hash) in heldBack {
            switch final[hash] {
            case .accepted?: summary.accepted += 1
            case .unauthorized(let reason)?:
                summary.unauthorized += 1
                report("line \(line): not authorized: \(reason)")
            case .heldBack(let reason)?:
                summary.heldBack += 1
                report("line \(line): held back: \(reason)")
            default:
                summary.rejected += 1
                report("line \(line): rejected when its chain was completed (see the rejected-events log)")
            }
        }
        return summary
    }
}

/// Batches the writer thread has stored, handed back to the importing thread in order.
final class WrittenBatches: @unchecked Sendable {
    private let lock = NSLock()
    private var batches: [([Int], Result<IngestReport, any Error>)] = []
    private var failed = false

    var hasFailed: Bool { lock.withLock { failed } }

    func append(_ numbers: [Int], _ result: Result<IngestReport, any Error>) {
        lock.withLock {
            if case .failure = result { failed = true }
            batches.append((numbers, result))
        }
    }

    func takeAll() -> [([Int], Result<IngestReport, any Error>)] {
        lock.withLock {
            defer { batches.removeAll() }
            return batches
        }
    }
}
