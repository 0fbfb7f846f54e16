/// One side of range-based set reconciliation over a room's items (docs/PROTOCOL.md §17.3): it starts a session or
/// answers a message, and says which of its events the other side lacks. It holds no session state, so either side
/// may answer any message it receives, in any order, and a lost message only leaves its ranges unsettled until the next
/// session.
public struct Reconciler: Sendable {
    /// How ranges are cut (§17.3.3). Both sides may choose their own; these are the reference's.
    public struct Parameters: Sendable, Equatable {
        /// The most parts a differing range is cut into.
        public var branches = 32
        /// The size of part aimed for once a range is no larger than `branches × leafSize`.
        public var leafSize = 16
        /// A differing range holding at most this many of the sender's items is answered with their short ids.
        public var listSize = 24

        public init() {}
    }

    public let set: ReconciliationSet
    public let parameters: Parameters

    public init(_ set: ReconciliationSet, parameters: Parameters = Parameters()) {
        self.set = set
        self.parameters = parameters
    }

    /// What answering a message comes to.
    public struct Reply: Sendable, Equatable {
        /// The message to send back; `nil` when every range is settled.
        public var message: ReconciliationMessage?
        /// Items of this side that the other side lacks, in order: send their events.
        public var send: [ReconciliationItem]
        /// How many short ids this side asked for in `message` (events it lacks).
        public var wanted: Int

        public init(message: ReconciliationMessage?, send: [ReconciliationItem], wanted: Int) {
            self.message = message
            self.send = send
            self.wanted = wanted
        }
    }

    /// The first message of a session: the whole order, cut as a differing range is.
    public func start(salt: UInt64) -> ReconciliationMessage {
        var builder = Builder(lower: .zero)
        cut(0..<set.count, upper: .infinity, salt: salt, into: &builder)
        return ReconciliationMessage(salt: salt, lower: .zero, ranges: builder.ranges)
    }

    private typealias Range = ReconciliationMessage.Range

    /// Answers `message`: ranges whose fingerprints match are settled; differing ones are cut or listed; listed ones
    /// are compared, the items the other side lacks returned to send and the ones this side lacks asked for.
    ///
    /// Work is bounded by the message: a binary search per range, one SHA-256 per fingerprint compared or sent, at most
    /// ``Parameters/branches`` ranges out per range in, and the short ids it carries.
    public func reply(to message: ReconciliationMessage) -> Reply {
        let salt = message.salt
        var builder = Builder(lower: message.lower)
        var send: [ReconciliationItem] = []
        var wanted = 0
        var lowerIndex = set.index(of: message.lower)
        for range in message.ranges {
            let upperIndex = set.index(of: range.upper)
            let mine = lowerIndex..<upperIndex
            switch range.mode {
            case .skip:
                builder.skip(to: range.upper)
            case .fingerprint(let theirs):
                if set.fingerprint(mine, salt: salt) == theirs {
                    builder.skip(to: range.upper)
                } else {
                    cut(mine, upper: range.upper, salt: salt, into: &builder)
                }
            case .ids(let theirs):
                let listed = Set(theirs)
                var held = Set<UInt16>()
                for item in set.items[mine] {
                    let id = ReconciliationMessage.shortID(item.hash, salt: salt)
                    held.insert(id)
                    if !listed.contains(id) { send.append(item) }
                }
                var missing: [UInt16] = []
                var asked = Set<UInt16>()
                for id in theirs where !held.contains(id) && asked.insert(id).inserted { missing.append(id) }
                if missing.isEmpty {
                    builder.skip(to: range.upper)
                } else {
                    builder.add(Range(upper: range.upper, mode: .want(missing)))
                    wanted += missing.count
                }
            case .want(let ids):
                let asked = Set(ids)
                for item in set.items[mine] where asked.contains(ReconciliationMessage.shortID(item.hash, salt: salt)) { send.append(item) }
                builder.skip(to: range.upper)
            }
            lowerIndex = upperIndex
        }
        return Reply(message: builder.message(salt: salt), send: send, wanted: wanted)
    }

    /// Writes `items[indices]`, which end below `upper`, as a differing range is answered: its short ids when few,
    /// otherwise parts of about equal counts, each a fingerprint (or its short ids when it holds at most one item).
    private func cut(_ indices: Swift.Range<Int>, upper: ReconciliationBound, salt: UInt64, into builder: inout Builder) {
        let count = indices.count
        if count <= parameters.listSize {
            builder.add(Range(upper: upper, mode: .ids(shortIDs(indices, salt: salt))))
            return
        }
        let parts =
            count > parameters.branches * parameters.leafSize
            ? parameters.branches : (count + parameters.leafSize - 1) / parameters.leafSize
        for part in 0..<parts {
            let start = indices.lowerBound + count * part / parts
            let end = indices.lowerBound + count * (part + 1) / parts
            let partUpper = part == parts - 1 ? upper : ReconciliationBound(between: set.items[end - 1], and: set.items[end])
            let mode: ReconciliationMessage.Mode =
                end - start <= 1 ? .ids(shortIDs(start..<end, salt: salt)) : .fingerprint(set.fingerprint(start..<end, salt: salt))
            builder.add(Range(upper: partUpper, mode: mode))
        }
    }

    private func shortIDs(_ indices: Swift.Range<Int>, salt: UInt64) -> [UInt16] {
        set.items[indices].map { ReconciliationMessage.shortID($0.hash, salt: salt) }
    }

    /// Collects a reply's ranges: skips merge, a leading skip moves the lower bound, a trailing one is dropped.
    private struct Builder {
        var lower: ReconciliationBound
        var ranges: [Range] = []

        init(lower: ReconciliationBound) {
            self.lower = lower
        }

        mutating func skip(to upper: ReconciliationBound) {
            if ranges.isEmpty {
                lower = upper
            } else if ranges[ranges.count - 1].mode == .skip {
                ranges[ranges.count - 1].upper = upper
            } else {
                ranges.append(Range(upper: upper, mode: .skip))
            }
        }

        mutating func add(_ range: Range) {
            ranges.append(range)
        }

        func message(salt: UInt64) -> ReconciliationMessage? {
            var ranges = ranges
            if ranges.last?.mode == .skip { ranges.removeLast() }
            return ranges.isEmpty ? nil : ReconciliationMessage(salt: salt, lower: lower, ranges: ranges)
        }
    }
}
