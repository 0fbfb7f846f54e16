/// Events between peers (docs/PROTOCOL.md §17.5): whole event lines, LF-terminated, packed into batches; a batch larger
/// than a datagram's body is cut into fragments, each body `batch id (8 bytes) ‖ index (2 bytes) ‖ count (2 bytes) ‖
/// piece`, all big-endian; the receiver puts a batch back together once every fragment came.
public enum EventBatches {
    /// The bytes of a fragment's header.
    public static let headerBytes = 12
    /// The most fragments of one batch: enough for the largest event (64 KiB) in the smallest body a room id allows.
    public static let maxFragments = 96

    /// Packs `lines` (each an event's wire bytes, without LF) into fragment bodies of at most `budget` bytes: lines go
    /// into one batch while it fits one body, and a line that does not fit one body is a batch of its own, cut into
    /// fragments. `batchID` gives each batch its id (random, from the driver).
    public static func bodies(for lines: [[UInt8]], budget: Int, batchID: () -> UInt64) -> [[UInt8]] {
        let room = budget - headerBytes
        precondition(room > 0)
        var bodies: [[UInt8]] = []
        var batch: [UInt8] = []
        func flush() {
            guard !batch.isEmpty else { return }
            let id = batchID()
            let count = (batch.count + room - 1) / room
            for index in 0..<count {
                let piece = batch[(index * room)..<min(batch.count, (index + 1) * room)]
                bodies.append(bigEndian64(id) + [UInt8(index >> 8), UInt8(index & 0xFF), UInt8(count >> 8), UInt8(count & 0xFF)] + piece)
            }
            batch = []
        }
        for line in lines {
            if !batch.isEmpty, batch.count + line.count + 1 > room { flush() }
            batch += line
            batch.append(UInt8(ascii: "\n"))
            if batch.count > room { flush() }
        }
        flush()
        return bodies
    }

    static func bigEndian64(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> UInt64(56 - $0 * 8)) } }
}

/// Puts batches back together from their fragments, within bounds: at most ``Limits/batchesPerSender`` incomplete
/// batches per sending device and ``Limits/batches`` in all, each given up ``Limits/timeoutMs`` after its first
/// fragment; a sender flooding fragments that never complete pushes out only its own oldest batches.
public struct EventReassembler: Sendable {
    public struct Limits: Sendable, Equatable {
        public var batchesPerSender = 8
        public var batches = 64
        public var timeoutMs: Int64 = 10_000

        public init() {}
    }

    /// Why a fragment was not taken.
    public enum Refusal: Error, Equatable, Sendable {
        /// Shorter than its header, a count of 0 or over ``EventBatches/maxFragments``, an index past the count, or a
        /// count other than the one the batch's first fragment gave.
        case malformed
    }

    private struct Key: Hashable {
        var sender: [UInt8]
        var batchID: UInt64
    }

    private struct Pending {
        var count: Int
        var pieces: [[UInt8]?]
        var received = 0
        var firstMs: Int64
    }

    public let limits: Limits
    private var pending: [Key: Pending] = [:]
    /// Batches completed lately, so that a duplicated fragment of one does not start it again.
    private var completed: [Key: Int64] = [:]

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// How many batches wait for fragments.
    public var pendingCount: Int { pending.count }

    /// Takes a fragment from `sender`.
    /// - Returns: the batch's bytes once complete (its event lines), else `nil`.
    public mutating func add(_ body: [UInt8], from sender: [UInt8], nowMs: Int64) throws(Refusal) -> [UInt8]? {
        guard body.count > EventBatches.headerBytes else { throw .malformed }
        let id = body[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let index = Int(body[8]) << 8 | Int(body[9])
        let count = Int(body[10]) << 8 | Int(body[11])
        guard count >= 1, count <= EventBatches.maxFragments, index < count else { throw .malformed }
        expire(nowMs: nowMs)
        let key = Key(sender: sender, batchID: id)
        guard completed[key] == nil else { return nil }
        let piece = Array(body[EventBatches.headerBytes...])
        if count == 1 {
            completed[key] = nowMs
            return piece
        }
        var batch = pending[key] ?? Pending(count: count, pieces: Array(repeating: nil, count: count), firstMs: nowMs)
        guard batch.count == count else { throw .malformed }
        if pending[key] == nil { makeRoom(for: sender) }
        if batch.pieces[index] == nil {
            batch.pieces[index] = piece
            batch.received += 1
        }
        guard batch.received == count else {
            pending[key] = batch
            return nil
        }
        pending[key] = nil
        completed[key] = nowMs
        return batch.pieces.reduce(into: []) { $0 += $1 ?? [] }
    }

    private mutating func makeRoom(for sender: [UInt8]) {
        let own = pending.filter { $0.key.sender == sender }
        if own.count >= limits.batchesPerSender, let oldest = own.min(by: { $0.value.firstMs < $1.value.firstMs }) {
            pending[oldest.key] = nil
        }
        if pending.count >= limits.batches, let oldest = pending.min(by: { $0.value.firstMs < $1.value.firstMs }) {
            pending[oldest.key] = nil
        }
    }

    private mutating func expire(nowMs: Int64) {
        pending = pending.filter { nowMs - $0.value.firstMs < limits.timeoutMs }
        if completed.count > 4_096 { completed = completed.filter { nowMs - $0.value < limits.timeoutMs } }
    }
}
