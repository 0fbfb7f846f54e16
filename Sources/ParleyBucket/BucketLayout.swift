import ParleyCore

/// Where a room's objects live in a bucket (docs/PROTOCOL.md §13):
///
///     rooms/{room_id}/metadata.json
///     rooms/{room_id}/logs/{YYYY-MM-DD}/messages_{start_ts}_{end_ts}_{client_id}.jsonl[.gz]
///     rooms/{room_id}/hints/{upload_ts}_{client_id}.txt
///     rooms/{room_id}/archive/{YYYY-MM-DD}/{first_ts}_{last_ts}_{client_id}.manifest.json (and .jsonl.gz)
///     rooms/{room_id}/blocks/{block_id}
///
/// Names are hints only: what a file holds is judged by its signed content. Room and client ids are checked
/// against their grammars before a key is built from them, so no key can escape its room.
public enum BucketLayout {
    public static func roomPrefix(_ roomID: String) -> String { "rooms/\(roomID)/" }
    public static func metadataKey(_ roomID: String) -> String { "rooms/\(roomID)/metadata.json" }
    public static func logsPrefix(_ roomID: String) -> String { "rooms/\(roomID)/logs/" }
    public static func hintsPrefix(_ roomID: String) -> String { "rooms/\(roomID)/hints/" }
    public static func archivePrefix(_ roomID: String) -> String { "rooms/\(roomID)/archive/" }
    public static func blocksPrefix(_ roomID: String) -> String { "rooms/\(roomID)/blocks/" }
    /// A file's block (docs/PROTOCOL.md §16): named by its id, so a block shared twice is one object.
    public static func blockKey(roomID: String, id: BlockID) -> String { "\(blocksPrefix(roomID))\(id.hex)" }

    /// The folder of a day's log files: `rooms/{room}/logs/{date}/`.
    public static func logsFolder(roomID: String, date: String) -> String { "\(logsPrefix(roomID))\(date)/" }

    /// The folder of a day's archive parts: `rooms/{room}/archive/{date}/`.
    public static func archiveFolder(roomID: String, date: String) -> String { "\(archivePrefix(roomID))\(date)/" }

    /// The first millisecond of the UTC day `date` (YYYY-MM-DD), or `nil` when it names no day.
    public static func startOfDayMs(_ date: String) -> Int64? {
        guard isCalendarDate(Substring(date)), let year = parseDigits(date.prefix(4)), let month = parseDigits(date.dropFirst(5).prefix(2)),
            let day = parseDigits(date.suffix(2))
        else { return nil }
        // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return (era * 146_097 + dayOfEra - 719_468) * dayMs
    }

    /// The first millisecond after the UTC day that `ms` falls in.
    public static func endOfDayMs(_ ms: Int64) -> Int64 { (max(0, ms) / dayMs + 1) * dayMs }

    static let dayMs: Int64 = 86_400_000

    /// The key of a hint that a file was uploaded late, named by the upload time.
    public static func hintKey(roomID: String, uploadMs: Int64, clientID: String) -> String {
        "\(hintsPrefix(roomID))\(digits(uploadMs))_\(clientID).txt"
    }

    /// The upload time a hint's name gives, or `nil` when the key is not a hint.
    public static func hintUploadMs(_ key: String, roomID: String) -> Int64? {
        let prefix = hintsPrefix(roomID)
        guard key.hasPrefix(prefix), key.hasSuffix(".txt") else { return nil }
        let name = key.dropFirst(prefix.count).dropLast(4)
        guard let underscore = name.firstIndex(of: "_"),
            Identifier.problem(with: String(name[name.index(after: underscore)...]), kind: .client) == nil
        else { return nil }
        return parseDigits(name[..<underscore])
    }

    /// The prefix a listing starts after to see every log file whose name starts at `ms` or later.
    public static func logsStartAfter(roomID: String, ms: Int64) -> String {
        let time = max(0, ms)
        // "messages_{time}" sorts before every name starting at `time` and after every name starting earlier.
        return "\(logsPrefix(roomID))\(utcDate(time))/messages_\(digits(time))"
    }

    /// The key a listing of hints starts after to see every hint uploaded at `ms` or later.
    public static func hintsStartAfter(roomID: String, ms: Int64) -> String {
        "\(hintsPrefix(roomID))\(digits(max(0, ms)))"
    }

    /// The "YYYY-MM-DD" (UTC) of a Unix time in milliseconds (clamped to the range of event times).
    public static func utcDate(_ ms: Int64) -> String {
        let text = EventID.formatTimestamp(min(max(0, ms), EventID.maxTimestampMs))
        return "\(text.prefix(4))-\(text.dropFirst(4).prefix(2))-\(text.dropFirst(6).prefix(2))"
    }

    /// Whether `text` is a real day written YYYY-MM-DD: a folder named `2026-13-45` has the shape but names no day.
    static func isCalendarDate(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == 0x2D, bytes[7] == 0x2D,
            let year = parseDigits(text.prefix(4)), let month = parseDigits(text.dropFirst(5).prefix(2)), let day = parseDigits(text.suffix(2))
        else { return false }
        let isLeap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days: [Int64] = [31, isLeap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return (1...12).contains(month) && (1...days[Int(month) - 1]).contains(day)
    }

    /// Timestamps in names are 13-digit decimals (zero-padded), so names sort by time until the year 2286.
    static func digits(_ value: Int64) -> String { padded(value, 13) }

    static func padded(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    static func parseDigits(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.count <= 16, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        return Int64(text)
    }
}

/// A log file's name: `rooms/{room}/logs/{date}/messages_{start}_{end}_{client}.jsonl` (or `.jsonl.gz`).
public struct LogFileName: Sendable, Equatable {
    public var roomID: String
    public var startMs: Int64
    public var endMs: Int64
    public var clientID: String
    public var gzip: Bool
    /// The date folder the file sits in (for a parsed name: as found, which may not match `startMs`).
    public var dateFolder: String

    public init(roomID: String, startMs: Int64, endMs: Int64, clientID: String, gzip: Bool = false) {
        self.roomID = roomID
        self.startMs = startMs
        self.endMs = endMs
        self.clientID = clientID
        self.gzip = gzip
        dateFolder = BucketLayout.utcDate(startMs)
    }

    public var key: String {
        "\(BucketLayout.logsPrefix(roomID))\(dateFolder)/messages_\(BucketLayout.digits(startMs))_\(BucketLayout.digits(endMs))_\(clientID).jsonl\(gzip ? ".gz" : "")"
    }

    /// The device-key fingerprint prefix (12 hex digits) a client id of the reference form `{user}.{fingerprint}`
    /// or `{user}.{fingerprint}.{n}` names, or `nil` for a client id of another form (which names nothing checkable).
    public var claimedFingerprintPrefix: String? {
        var parts = clientID.split(separator: ".")
        if parts.count >= 3, parts.last!.allSatisfy(\.isNumber) { parts.removeLast() }
        guard parts.count >= 2, let last = parts.last, last.utf8.count == 12,
            last.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        return String(last)
    }

    /// Whether the date folder is the one the start time falls in.
    public var isDateConsistent: Bool { dateFolder == BucketLayout.utcDate(startMs) }

    /// Parses a key found under `rooms/{roomID}/logs/`.
    /// - Returns: the name, or why the key is not a Parley log file (it is then ignored, with a warning).
    public static func parse(key: String, roomID: String) -> Result<LogFileName, NameProblem> {
        let prefix = BucketLayout.logsPrefix(roomID)
        guard key.hasPrefix(prefix) else { return .failure(.init("not under \(prefix)")) }
        let parts = key.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .failure(.init("not of the form {YYYY-MM-DD}/messages_{start}_{end}_{client}.jsonl")) }
        let date = parts[0]
        var name = parts[1]
        guard BucketLayout.isCalendarDate(date) else { return .failure(.init("the folder \(ObjectKey.debugQuoted(String(date))) is not a YYYY-MM-DD date")) }
        let gzip: Bool
        if name.hasSuffix(".jsonl.gz") {
            gzip = true
            name = name.dropLast(9)
        } else if name.hasSuffix(".jsonl") {
            gzip = false
            name = name.dropLast(6)
        } else {
            return .failure(.init("not a .jsonl or .jsonl.gz file"))
        }
        guard name.hasPrefix("messages_") else { return .failure(.init("the name does not start with messages_")) }
        let fields = name.dropFirst(9).split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let start = BucketLayout.parseDigits(fields[0]), let end = BucketLayout.parseDigits(fields[1]) else {
            return .failure(.init("the name has no {start}_{end} millisecond times"))
        }
        guard start <= end else { return .failure(.init("the name's time range ends before it starts")) }
        let client = String(fields[2])
        if let problem = Identifier.problem(with: client, kind: .client) { return .failure(.init("the name's \(problem)")) }
        var parsed = LogFileName(roomID: roomID, startMs: start, endMs: end, clientID: client, gzip: gzip)
        parsed.dateFolder = String(date)
        return .success(parsed)
    }

    /// Why a key is not a log file name.
    public struct NameProblem: Error, Sendable, Equatable {
        public var reason: String
        init(_ reason: String) { self.reason = reason }
    }
}
