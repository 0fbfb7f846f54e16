import ParleyCore
import ParleySync

/// The decisions of one sync of a bucket room (docs/PROTOCOL.md §13.3): what to list, which objects to read, which
/// failed files to try again and when, when to give one up, and how far the listing cursors move.
///
/// It performs nothing and keeps no clock: the driver performs each ``Action`` and hands back what came of it, in the
/// order the machine asks. One machine serves one sync; the next sync starts a new one from the stored ``Progress``.
public struct BucketPoller: Sendable {
    public struct Settings: Sendable, Equatable {
        /// How far before the newest file seen an incremental listing starts: covers writers that buffer, clocks that
        /// differ, and uploads that take a while.
        public var latenessMs: Int64 = 120_000
        /// While a chain has a gap, list the whole room at most this often, to find a file that arrived late without
        /// a hint.
        public var gapListingEveryMs: Int64 = 60_000
        /// Objects larger than this are not downloaded.
        public var maxObjectBytes: Int64 = 64 << 20
        /// A file whose reading keeps failing for a transient reason is retried, less and less often, for this long;
        /// then it is recorded as read with the problem.
        public var readGiveUpMs: Int64 = 86_400_000
        /// Whether a first sync may read the room's archives before its log files (docs/PROTOCOL.md §13.9.5).
        public var readsArchives = true
        /// Archives of a day are used only once it ended this long ago: its files may still be arriving.
        public var archiveLatenessMs = ArchiveSelection.latenessMs

        public init() {}
    }

    /// What a node keeps of its reading of a room between syncs.
    public struct Progress: Sendable, Equatable {
        /// The newest start time (ms) among log file names seen, never later than the local clock was then.
        public var logsCursorMs: Int64
        /// The newest upload time among hints seen, likewise.
        public var hintsCursorMs: Int64
        /// When the logs were last listed from the beginning (0: never).
        public var fullListingMs: Int64

        public init(logsCursorMs: Int64 = 0, hintsCursorMs: Int64 = 0, fullListingMs: Int64 = 0) {
            self.logsCursorMs = logsCursorMs
            self.hintsCursorMs = hintsCursorMs
            self.fullListingMs = fullListingMs
        }
    }

    /// A file whose reading failed for a transient reason, and when to read it again: the record the store keeps.
    public typealias ReadFailure = ReadFailureRecord

    /// What the driver does next.
    public enum Action: Sendable, Equatable {
        /// List the room's log files after `logsAfter` (from the beginning when `nil`) and its hints after
        /// `hintsAfter`; answer with ``listed(logs:hints:)``.
        case list(logsAfter: String?, hintsAfter: String)
        /// Tell which of `keys` this node processed before, and the room's files whose reading failed before; answer
        /// with ``recalled(seen:failures:)``.
        case recall(keys: [String])
        /// Get the hint's body (at most ``hintMaxBytes``); answer with ``hintRead(_:)``.
        case readHint(key: String)
        /// Ask the bucket whether `key` exists and how large it is; answer with ``looked(_:)``.
        case look(key: String)
        /// Read these objects, in this order: ask ``admission(of:)`` about each before downloading it, store its
        /// events, then report with ``fileRead(_:name:)`` or ``fileFailed(_:error:)``; ``finish()`` after the last.
        case read([ObjectInfo])
    }

    /// What to do with one listed object before downloading it.
    public enum Admission: Sendable, Equatable {
        case download(LogFileName)
        /// Not a log file (or empty): recorded as seen with this reason, never read.
        case ignore(String)
        /// Not read, for this fault.
        case fail(BucketError)
    }

    /// What becomes of a file whose reading failed.
    public enum FailureVerdict: Sendable, Equatable {
        /// Not recorded as seen: a later sync reads it again once the failure's wait is over.
        case retry(ReadFailure)
        /// Recorded as seen, with this problem: it is not read again.
        case record(problem: String)
    }

    /// A hint this sync followed, to record as seen once the files it led to are stored.
    public struct SeenHint: Sendable, Equatable {
        public var key: String
        public var size: Int64
        public var problem: String?

        public init(key: String, size: Int64, problem: String?) {
            self.key = key
            self.size = size
            self.problem = problem
        }
    }

    /// What one sync found: recorded as seen (`hints`), moved (`progress`), or told (`problems`, `ignored`).
    public struct Outcome: Sendable, Equatable {
        /// The progress to store: cursors never move back.
        public var progress: Progress
        public var hints: [SeenHint]
        /// Files recorded as read with nothing to read in them: listed again by name, they are gone.
        public var vanished: [String]
    }

    public static let hintMaxBytes = 4096

    public let roomID: String
    public let settings: Settings
    let progress: Progress
    let now: Int64
    /// Whether this sync lists the whole room (the first one, or one looking for a gap's events).
    public let listsEverything: Bool
    /// Faults to report, each naming its object.
    public internal(set) var problems: [String] = []
    /// Objects skipped, each naming its object and why.
    public internal(set) var ignored: [String] = []

    var phase = Phase.starting
    /// A first sync's reading of archives (BucketPoller+Archives.swift).
    var archives = ArchiveState()
    private var candidates: [ObjectInfo] = []
    private var known = Set<String>()
    private var failures: [String: ReadFailure] = [:]
    private var pendingHints: [ObjectInfo] = []
    private var pendingLooks: [String] = []
    private var hints: [SeenHint] = []
    private var vanished: [String] = []
    private var logsCursor: Int64?
    private var hintsCursor: Int64?

    enum Phase: Equatable {
        case starting, listing, recallingListing
        case readingHint(ObjectInfo)
        case recallingHintTarget(ObjectInfo, String)
        case lookingHintTarget(ObjectInfo, String)
        case lookingRetry(String)
        case reading, finished
    }

    /// - Parameters:
    ///   - hasGap: whether a chain of the room waits for a missing event (its events may be in a file that arrived
    ///     late without a hint).
    ///   - now: the local clock (ms) for the whole sync.
    public init(roomID: String, settings: Settings, progress: Progress, hasGap: Bool, now: Int64) {
        self.roomID = roomID
        self.settings = settings
        self.progress = progress
        self.now = now
        listsEverything = progress.fullListingMs == 0 || (hasGap && now - progress.fullListingMs >= settings.gapListingEveryMs)
    }

    /// The first action: the listings; after ``startArchives()``, once its actions are done.
    public mutating func start() -> Action {
        precondition(phase == .starting, "start() is called once")
        precondition(archives.phase == .idle || archives.phase == .done, "start() follows the archives' .done")
        phase = .listing
        return .list(
            logsAfter: listsEverything ? logsAfterArchives : BucketLayout.logsStartAfter(roomID: roomID, ms: progress.logsCursorMs - settings.latenessMs),
            hintsAfter: BucketLayout.hintsStartAfter(roomID: roomID, ms: progress.hintsCursorMs - settings.latenessMs))
    }

    /// The listings came back.
    public mutating func listed(logs: [ObjectInfo], hints: [ObjectInfo]) -> Action {
        precondition(phase == .listing, "listed(logs:hints:) answers .list")
        // After archives, the folders of days before the newest covered one that none covered were listed already.
        let logs = archives.logs + logs
        // The cursor follows every file listed, ours and those read before included, and those archives covered; never
        // past the local clock, so a name from the future cannot make the next listings skip what comes before it.
        logsCursor = logs.compactMap { try? LogFileName.parse(key: $0.key, roomID: roomID).get().startMs }.max().map { min($0, now) }
        if let covered = archives.cursorMs { logsCursor = max(logsCursor ?? 0, covered) }
        candidates = logs.filter { !archives.covered.contains($0.key) }
        pendingHints = hints
        phase = .recallingListing
        return .recall(keys: candidates.map(\.key) + hints.map(\.key))
    }

    /// What the node remembers: which of the keys asked for it processed before, and every file of the room whose
    /// reading failed before.
    public mutating func recalled(seen: Set<String>, failures: [String: ReadFailure]) -> Action {
        switch phase {
        case .recallingListing:
            known = seen
            self.failures = failures
            candidates.removeAll { seen.contains($0.key) }
            pendingHints.removeAll { seen.contains($0.key) }
            // Files that failed before are read again once their wait is over, found by name wherever this listing
            // started (the cursor may have passed them, or a hint that is now seen led to them); skipped until then.
            candidates.removeAll { object in
                guard let next = failures[object.key]?.nextMs, next > now else { return false }
                ignored.append("\(object.key): failed before; read again in \((next - now + 999) / 1000) s")
                return true
            }
            pendingLooks = failures.filter { $0.value.nextMs <= now }.map(\.key).sorted().filter { key in !candidates.contains { $0.key == key } }
            return next()
        case .recallingHintTarget(let hint, let target):
            if seen.contains(target) {
                hints.append(SeenHint(key: hint.key, size: hint.size, problem: nil))
                return next()
            }
            phase = .lookingHintTarget(hint, target)
            return .look(key: target)
        default:
            preconditionFailure("recalled(seen:failures:) answers .recall")
        }
    }

    /// The body of the hint asked for, or why it could not be read.
    public mutating func hintRead(_ body: Result<[UInt8], BucketError>) -> Action {
        guard case .readingHint(let hint) = phase else { preconditionFailure("hintRead(_:) answers .readHint") }
        let target: String
        switch body {
        case .failure(let error):
            return hintDone(hint, problem: error.message)
        case .success(let bytes):
            target = String(decoding: bytes, as: UTF8.self)
        }
        guard case .success = LogFileName.parse(key: target, roomID: roomID) else {
            return hintDone(hint, problem: "the hint does not name a log file of this room")
        }
        // A file that failed before is read by name once its wait is over, whatever leads to it.
        if known.contains(target) || archives.covered.contains(target) || candidates.contains(where: { $0.key == target }) || failures[target] != nil {
            return hintDone(hint, problem: nil)
        }
        phase = .recallingHintTarget(hint, target)
        return .recall(keys: [target])
    }

    /// What the bucket said of the key asked about: its size, `nil` when it does not exist, or a failure.
    public mutating func looked(_ answer: Result<ObjectInfo?, BucketError>) -> Action {
        switch phase {
        case .lookingHintTarget(let hint, let target):
            switch answer {
            case .failure(let error): return hintDone(hint, problem: error.message)
            case .success(nil): return hintDone(hint, problem: "the hint names \(target), which does not exist")
            case .success(let info?):
                candidates.append(info)
                return hintDone(hint, problem: nil)
            }
        case .lookingRetry(let key):
            switch answer {
            case .failure(let error): problems.append("\(key): \(error.message)")
            case .success(nil):
                vanished.append(key)
                problems.append("\(key): failed before, and is no longer in the bucket")
            case .success(let info?): candidates.append(info)
            }
            return next()
        default:
            preconditionFailure("looked(_:) answers .look")
        }
    }

    /// Whether to download a listed object. Pure: the driver may ask from its download tasks.
    public func admission(of object: ObjectInfo) -> Admission {
        let name: LogFileName
        switch LogFileName.parse(key: object.key, roomID: roomID) {
        case .failure(let problem): return .ignore(problem.reason)
        case .success(let parsed): name = parsed
        }
        if object.size > settings.maxObjectBytes {
            return .fail(BucketError(.tooLarge, "\(object.size) bytes, over the limit of \(settings.maxObjectBytes); not read"))
        }
        if object.size == 0 { return .ignore("empty") }
        return .download(name)
    }

    /// The driver skipped an object as ``admission(of:)`` said (`.ignore`).
    public mutating func fileIgnored(_ object: ObjectInfo, reason: String) {
        ignored.append("\(object.key): \(reason)")
    }

    /// A log file's events are stored.
    public mutating func fileRead(_ object: ObjectInfo, name: LogFileName) {
        logsCursor = max(logsCursor ?? 0, min(name.startMs, now))
    }

    /// A file could not be read.
    public mutating func fileFailed(_ object: ObjectInfo, error: BucketError) -> FailureVerdict {
        guard error.isTemporary else {
            problems.append("\(object.key): \(error.message)")
            return .record(problem: error.message)
        }
        let failure = ReadFailure.after(failures[object.key], nowMs: now)
        let failingFor = now - failure.firstMs
        if failingFor < settings.readGiveUpMs {
            problems.append("\(object.key): \(error.message)")
            return .retry(failure)
        }
        let problem = "\(error.message); given up after failing for \(failingFor / 1000) s"
        problems.append("\(object.key): \(problem)")
        return .record(problem: problem)
    }

    /// The sync's end: what to record. Call once every object of ``Action/read(_:)`` is reported.
    public mutating func finish() -> Outcome {
        precondition(phase == .reading, "finish() follows .read")
        phase = .finished
        return Outcome(
            progress: Progress(
                logsCursorMs: max(progress.logsCursorMs, logsCursor ?? 0), hintsCursorMs: max(progress.hintsCursorMs, hintsCursor ?? 0),
                fullListingMs: listsEverything ? max(progress.fullListingMs, now) : progress.fullListingMs),
            hints: hints, vanished: vanished)
    }

    private mutating func hintDone(_ hint: ObjectInfo, problem: String?) -> Action {
        if let problem { problems.append("\(hint.key): \(problem)") }
        hints.append(SeenHint(key: hint.key, size: hint.size, problem: problem))
        if let uploaded = BucketLayout.hintUploadMs(hint.key, roomID: roomID) { hintsCursor = max(hintsCursor ?? 0, min(uploaded, now)) }
        return next()
    }

    /// Retries first (a hint may lead to one of them), then hints, then the reading.
    private mutating func next() -> Action {
        if !pendingLooks.isEmpty {
            let key = pendingLooks.removeFirst()
            phase = .lookingRetry(key)
            return .look(key: key)
        }
        while !pendingHints.isEmpty {
            let hint = pendingHints.removeFirst()
            guard BucketLayout.hintUploadMs(hint.key, roomID: roomID) != nil else {
                problems.append("\(hint.key): ignored: not a hint name")
                hints.append(SeenHint(key: hint.key, size: hint.size, problem: "ignored: not a hint name"))
                continue
            }
            phase = .readingHint(hint)
            return .readHint(key: hint.key)
        }
        phase = .reading
        return .read(BucketPoller.chainOrder(candidates, roomID: roomID))
    }

    /// Log files in the order their events were most likely written: by start and end time, then by writer, a writer's
    /// renamed files (`client.1`, `client.2`, …, `client.10`) after the file whose name they took, in number order.
    /// Key order puts `client.10` before `client.2` and both before `client`, and a device that writes many files
    /// in one millisecond (a burst) renames most of them: read in key order, most of its chain would arrive out of
    /// order and wait to be released. Other keys keep their place at the end.
    static func chainOrder(_ objects: [ObjectInfo], roomID: String) -> [ObjectInfo] {
        let keyed = objects.enumerated().map { position, object -> (ObjectInfo, (Int64, Int64, String, Int, Int)) in
            guard case .success(let name) = LogFileName.parse(key: object.key, roomID: roomID) else { return (object, (.max, .max, "", 0, position)) }
            var parts = name.clientID.split(separator: ".")
            var number = 0
            if parts.count >= 3, let last = parts.last, last.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let value = Int(last) {
                number = value
                parts.removeLast()
            }
            return (object, (name.startMs, name.endMs, parts.joined(separator: "."), number, position))
        }
        return keyed.sorted { $0.1 < $1.1 }.map(\.0)
    }
}

extension BucketPoller.Progress {
    /// The progress as the bucket transport's cursor in a node's store: `{"full_listing_ms":…,"hints_ms":…,"logs_ms":…}`.
    public var cursor: [UInt8] {
        CanonicalJSON.encode(["full_listing_ms": .integer(fullListingMs), "hints_ms": .integer(hintsCursorMs), "logs_ms": .integer(logsCursorMs)])
    }

    /// Reads a cursor; an empty or unreadable one is no progress, so the next sync lists the room from its beginning.
    public init(cursor: [UInt8]) {
        guard !cursor.isEmpty, let value = try? JSONParser(maxDepth: 2, maxBytes: 1 << 10).parse(cursor) else {
            self.init()
            return
        }
        self.init(
            logsCursorMs: value["logs_ms"]?.integerValue ?? 0, hintsCursorMs: value["hints_ms"]?.integerValue ?? 0,
            fullListingMs: value["full_listing_ms"]?.integerValue ?? 0)
    }

    /// Each part the later of the two: a cursor never moves back, whoever advanced it meanwhile.
    public func merged(with other: BucketPoller.Progress) -> BucketPoller.Progress {
        BucketPoller.Progress(
            logsCursorMs: max(logsCursorMs, other.logsCursorMs), hintsCursorMs: max(hintsCursorMs, other.hintsCursorMs),
            fullListingMs: max(fullListingMs, other.fullListingMs))
    }
}

extension ReadFailureRecord {
    /// The record after one more failure at `nowMs`: each wait twice the one before, from one second up to an hour, so
    /// a store that keeps failing is not asked for the whole object on every poll.
    public static func after(_ previous: ReadFailureRecord?, nowMs: Int64) -> ReadFailureRecord {
        let attempts = (previous?.attempts ?? 0) + 1
        let delay = min(Int64(1000) << min(attempts - 1, 12), 3_600_000)
        return ReadFailureRecord(attempts: attempts, firstMs: previous?.firstMs ?? nowMs, nextMs: nowMs + delay)
    }
}
