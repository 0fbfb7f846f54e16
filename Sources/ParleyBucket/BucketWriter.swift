import ParleySync

/// The decisions of writing this device's events to a bucket room (docs/PROTOCOL.md §13.1, §13.4): which events
/// go in the next log file and under what name, what to do when the name is taken, and when readers need a hint.
///
/// It performs nothing: the driver hands it this device's pending events and the outcome of each write, and
/// carries out the ``Action`` it returns. One machine writes one file.
public struct BucketWriter: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Most events in one log file.
        public var maxEventsPerFile = 10_000
        /// Most bytes in one log file (before compression); a single larger event still gets a file of its own.
        public var maxFileBytes = 8 << 20
        /// Write `.jsonl.gz` files.
        public var gzip = false
        /// A file whose first event is older than this when it is written also gets a hint, so readers whose listing
        /// window has passed its name still find it.
        public var hintAfterMs: Int64 = 30_000

        public init() {}
    }

    /// One of this device's events waiting to be written, in seq order.
    /// This device's events as the store hands them out (ParleySync).
    public typealias PendingEvent = ParleySync.PendingEvent

    /// The next log file: its name, how many of the pending events it holds, and its lines.
    public struct File: Sendable, Equatable {
        public var key: String
        public var events: Int
        /// The events' lines, each ending in LF, uncompressed.
        public var content: [UInt8]
    }

    /// What the driver does next.
    public enum Action: Sendable, Equatable {
        /// Write `body` under `key`, create-only; answer with ``written(_:now:)``.
        case write(key: String)
        /// Record that the upload is now named `key`, unless another upload of the room has that name; answer with
        /// ``renamed(_:)``.
        case rename(key: String)
        /// Write a hint at `key` whose body names the file (`body`); answer with ``hintWritten()``. A failure ends the
        /// flush unconfirmed: the next one writes the same file (found identical) and the hint again.
        case writeHint(key: String, body: [UInt8])
        /// The bucket holds the file under `key`: record it as confirmed. Done.
        case confirm(key: String)
        /// No free name was found: give up this flush with this message. Done.
        case fail(String)
    }

    /// The most names tried for one file before giving up.
    public static let maxRenames = 1000

    /// The next file from this device's pending events, or `nil` when there are none.
    /// - Parameters:
    ///   - clientID: this device's id in file names (docs/PROTOCOL.md §13.1).
    ///   - isTaken: whether an earlier upload of this room already has a name (two batches in one millisecond).
    public static func nextFile(
        of pending: [PendingEvent], roomID: String, clientID: String, settings: Settings, isTaken: (String) throws -> Bool
    ) rethrows -> File? {
        var content: [UInt8] = []
        var count = 0
        for event in pending.prefix(settings.maxEventsPerFile) {
            if count > 0, content.count + event.wire.count + 1 > settings.maxFileBytes { break }
            content += event.wire
            content.append(0x0A)
            count += 1
        }
        guard count > 0 else { return nil }
        var name = LogFileName(
            roomID: roomID, startMs: pending[0].timestampMs, endMs: pending[count - 1].timestampMs, clientID: clientID, gzip: settings.gzip)
        var attempt = 0
        while try isTaken(name.key) {
            attempt += 1
            name.clientID = "\(clientID).\(attempt)"
        }
        return File(key: name.key, events: count, content: content)
    }

    public let settings: Settings
    let clientID: String
    let firstTimestampMs: Int64
    private var name: LogFileName?
    private let originalKey: String
    private var key: String
    private var baseClientID: String
    private var attempt = 0

    /// A machine for writing one upload: assigned earlier under `key`, its first event dated `firstTimestampMs`.
    public init(key: String, roomID: String, firstTimestampMs: Int64, clientID: String, settings: Settings) {
        self.settings = settings
        self.clientID = clientID
        self.firstTimestampMs = firstTimestampMs
        originalKey = key
        self.key = key
        name = try? LogFileName.parse(key: key, roomID: roomID).get()
        baseClientID = name?.clientID ?? clientID
    }

    /// The first action: write the file under the name it was given.
    public func start() -> Action { .write(key: key) }

    /// What the write found. `now` is the local clock (ms).
    public mutating func written(_ outcome: PutOutcome, now: Int64) -> Action {
        guard outcome == .conflict else {
            if now - firstTimestampMs > settings.hintAfterMs {
                // The file's name sorts before where readers now list from: point them to it.
                let roomID = name?.roomID ?? ""
                return .writeHint(key: BucketLayout.hintKey(roomID: roomID, uploadMs: now, clientID: clientID), body: Array(key.utf8))
            }
            return .confirm(key: key)
        }
        // Another object has this name (it is only a name): take the next one free here and there.
        return nextName()
    }

    /// Whether the store took the new name (`false`: another upload of the room has it).
    public mutating func renamed(_ accepted: Bool) -> Action {
        accepted ? .write(key: key) : nextName()
    }

    /// The hint is written.
    public func hintWritten() -> Action { .confirm(key: key) }

    private mutating func nextName() -> Action {
        guard var name, attempt + 1 < BucketWriter.maxRenames else { return .fail("Cannot find a free name for \(originalKey).") }
        attempt += 1
        name.clientID = "\(baseClientID).\(attempt)"
        key = name.key
        return .rename(key: key)
    }
}
