import ParleyBucket

/// One setting of a node: its key in `config.toml`, the `PARLEY_*` environment variable and the flag that can give
/// it, and the values it takes. ``Configuration`` resolves each from the first of these that gives it.
///
/// Secrets are never settings: S3 credentials come from the `AWS_*` environment variables only, so `config.toml`
/// can be shared, backed up or shown.
public struct Setting: Sendable, Hashable, CustomStringConvertible {
    /// Its key in `config.toml`, `section.name` (`sync.interval`: `interval` under `[sync]`).
    public let key: String
    /// The flag that gives it for one command (`--interval` of `parley sync --watch`), if there is one.
    public let flag: String?
    let kind: Kind
    /// Its value when nothing gives it.
    public let defaultValue: SettingValue
    /// What it changes, one sentence.
    public let summary: String

    enum Kind: Sendable, Hashable {
        case boolean
        /// A number of seconds above `minimum` (at least `minimum` when `inclusive`), and at most a day.
        case seconds(minimum: Double, inclusive: Bool)
        case port
        case host
        case logLevel
        case retention
        /// HOST:PORT, or unset.
        case address
        /// One of the words listed.
        case choice([String])
    }

    /// `PARLEY_` and the key in capitals, its dot an underscore: `PARLEY_SYNC_INTERVAL`.
    public var environmentVariable: String {
        "PARLEY_" + String(key.uppercased().map { $0 == "." ? "_" : $0 })
    }

    public var description: String { key }

    /// Its section in `config.toml` (`sync`).
    public var section: String { String(key.prefix { $0 != "." }) }

    /// Its name within the section (`interval`).
    public var name: String { String(key.drop { $0 != "." }.dropFirst()) }
}

extension Setting {
    public static let bucketGzip = Setting(
        key: "bucket.gzip", flag: nil, kind: .boolean, defaultValue: .boolean(false),
        summary: "Write log files gzip-compressed (.jsonl.gz); readers take both.")
    public static let bucketRetention = Setting(
        key: "bucket.retention", flag: nil, kind: .retention, defaultValue: .unset,
        summary: "Ask S3 Object Lock to keep each file written for DAYS: governance:DAYS or compliance:DAYS (the bucket must have Object Lock).")
    public static let bucketWriteArchives = Setting(
        key: "bucket.write_archives", flag: nil, kind: .boolean, defaultValue: .boolean(true),
        summary:
            "Have `parley node` and `parley sync --watch` write the archive of each past day of the bucket rooms this device is a member of, so a new reader reads a few objects a day instead of every log file."
    )
    public static let syncInterval = Setting(
        key: "sync.interval", flag: "--interval", kind: .seconds(minimum: 0, inclusive: false), defaultValue: .seconds(1),
        summary: "Seconds between polls of each bucket room under `parley sync --watch`.")
    public static let syncFlushInterval = Setting(
        key: "sync.flush_interval", flag: "--flush-interval", kind: .seconds(minimum: 0, inclusive: true), defaultValue: .seconds(2),
        summary: "Seconds an event may wait in the outbox under `parley sync --watch` before it is written.")
    public static let nodeAPIHost = Setting(
        key: "node.api_host", flag: "--api-host", kind: .host, defaultValue: .text("127.0.0.1"),
        summary: "The address `parley node` serves its local API on; anything but a loopback address lets other machines knock.")
    public static let nodeAPIPort = Setting(
        key: "node.api_port", flag: "--api-port", kind: .port, defaultValue: .integer(0),
        summary: "The port of `parley node`'s local API; 0 takes a free one (written to node.json).")
    public static let nodeLogLevel = Setting(
        key: "node.log_level", flag: nil, kind: .logLevel, defaultValue: .text("info"),
        summary: "The least severe log messages `parley node` writes: trace, debug, info, notice, warning, error or critical.")

    public static let peersListen = Setting(
        key: "peers.listen", flag: "--listen-udp", kind: .address, defaultValue: .unset,
        summary:
            "The UDP address (HOST:PORT) `parley node` syncs its peer rooms on; unset, it syncs with no peers. Anything but a loopback address lets other machines send it datagrams."
    )
    public static let peersSync = Setting(
        key: "peers.sync", flag: "--sync", kind: .choice(["reconcile", "bloom"]), defaultValue: .text("reconcile"),
        summary: "How peers find what the other lacks: reconcile (range-based set reconciliation) or bloom (Bloom filters every interval).")
    public static let peersInterval = Setting(
        key: "peers.interval", flag: nil, kind: .seconds(minimum: 0.05, inclusive: true), defaultValue: .seconds(2),
        summary: "Seconds between a peer room's syncs with each peer; new events of this device go to its peers at once.")
    public static let peersDiscover = Setting(
        key: "peers.discover", flag: "--discover", kind: .address, defaultValue: .unset,
        summary:
            "The multicast group (HOST:PORT, as 239.255.77.77:7799) where `parley node` announces its rooms to the LAN under tags that name none in clear, and finds peers of them; unset, nothing is announced."
    )
    public static let peersFetchFiles = Setting(
        key: "peers.fetch_files", flag: nil, kind: .boolean, defaultValue: .boolean(true),
        summary:
            "Whether `parley node` fetches the files (up to 64 MiB) that messages of its peer rooms share as they arrive, so they are here when their sender is not."
    )

    /// Every setting, in the order `parley config show` lists them.
    public static let all: [Setting] = [
        bucketGzip, bucketRetention, bucketWriteArchives, syncInterval, syncFlushInterval, nodeAPIHost, nodeAPIPort, nodeLogLevel, peersListen, peersSync,
        peersInterval, peersDiscover, peersFetchFiles,
    ]

    /// The sections of `config.toml`.
    public static var sections: [String] {
        all.reduce(into: []) { sections, setting in if !sections.contains(setting.section) { sections.append(setting.section) } }
    }

    /// The log levels, least severe first (swift-log's).
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// The longest wait a seconds setting takes: a day. A poll interval longer than that is a mistake, and waits are
    /// counted in nanoseconds, which a few hundred years would overflow.
    static let maxSeconds = 86_400.0
}

/// A setting's value.
public enum SettingValue: Sendable, Hashable, CustomStringConvertible {
    case boolean(Bool)
    case seconds(Double)
    case integer(Int)
    case text(String)
    case retention(Retention.Mode, days: Int)
    /// Not set, where that means something (no retention); shown as `none`.
    case unset

    /// The value as `config.toml` would say it, unquoted: `true`, `1.5`, `127.0.0.1`, `governance:30`, `none`.
    public var description: String {
        switch self {
        case .boolean(let value): "\(value)"
        case .seconds(let value): "\(value)"
        case .integer(let value): "\(value)"
        case .text(let value): value
        case .retention(let mode, let days): "\(mode.rawValue.lowercased()):\(days)"
        case .unset: "none"
        }
    }
}

extension Setting {
    /// What a value must be, for errors: `a number of seconds above 0`.
    var expected: String {
        switch kind {
        case .boolean: "true or false"
        case .seconds(let minimum, let inclusive):
            "a number of seconds \(inclusive ? "at least" : "above") \(Setting.seconds(minimum)), at most \(Setting.seconds(Setting.maxSeconds))"
        case .port: "a port number from 0 to 65535 (0: any free port)"
        case .host: "an IP address or a host name"
        case .logLevel: "one of \(Setting.logLevels.joined(separator: ", "))"
        case .retention: "governance:DAYS or compliance:DAYS (DAYS a whole number above 0), or none"
        case .address: "HOST:PORT (an IPv4 address, a host name, or an IPv6 address in brackets), or none"
        case .choice(let words): "one of \(words.joined(separator: ", "))"
        }
    }

    /// What is wrong with `value` for this setting, as the end of a sentence that starts with its name
    /// (`must be above 0 seconds`); nil when it takes it.
    public func problem(with value: SettingValue) -> String? {
        switch (kind, value) {
        case (.boolean, .boolean), (.retention, .unset), (.address, .unset): return nil
        case (.address, .text(let address)): return RoomLocation.isPeerAddress(address) ? nil : "must be \(expected)"
        case (.choice(let words), .text(let word)): return words.contains(word) ? nil : "must be \(expected)"
        case (.seconds(let minimum, let inclusive), .seconds(let seconds)):
            if inclusive ? !(seconds >= minimum) : !(seconds > minimum) {
                return "must be \(inclusive ? "at least" : "above") \(Setting.seconds(minimum)) seconds"
            }
            return seconds <= Setting.maxSeconds ? nil : "must be at most \(Setting.seconds(Setting.maxSeconds)) seconds (a day)"
        case (.port, .integer(let port)): return (0...65535).contains(port) ? nil : "must be a port number from 0 to 65535"
        case (.host, .text(let host)): return Setting.isHost(host) ? nil : "must be \(expected)"
        case (.logLevel, .text(let level)): return Setting.logLevels.contains(level) ? nil : "must be \(expected)"
        case (.retention, .retention(_, let days)): return days > 0 ? nil : "must keep files for at least 1 day"
        default: return "must be \(expected)"
        }
    }

    /// `text`, an environment variable's value, as this setting's value.
    func value(parsing text: String) -> Result<SettingValue, SettingProblem> {
        let parsed: SettingValue?
        switch kind {
        case .boolean:
            switch text.lowercased() {
            case "1", "true", "yes", "on": parsed = .boolean(true)
            case "0", "false", "no", "off": parsed = .boolean(false)
            default: parsed = nil
            }
        case .seconds: parsed = Double(text).map(SettingValue.seconds)
        case .port: parsed = Int(text).map(SettingValue.integer)
        case .host, .logLevel, .choice: parsed = .text(text)
        case .retention: parsed = Setting.retention(parsing: text)
        case .address: parsed = text.lowercased() == "none" ? .unset : .text(text)
        }
        return checking(parsed)
    }

    /// `value` when this setting takes it, else what is wrong with it (`nil`: not even of the right kind).
    func checking(_ value: SettingValue?) -> Result<SettingValue, SettingProblem> {
        guard let value else { return .failure(SettingProblem(phrase: "must be \(expected)")) }
        if let problem = problem(with: value) { return .failure(SettingProblem(phrase: problem)) }
        return .success(value)
    }

    /// A bound in a sentence: `0`, `86400`, `0.5`.
    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))" : "\(value)"
    }

    /// `governance:30`, `compliance:7` or `none`.
    static func retention(parsing text: String) -> SettingValue? {
        if text.lowercased() == "none" { return .unset }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let mode = Retention.Mode(rawValue: parts[0].uppercased()), let days = Int(parts[1]) else { return nil }
        return .retention(mode, days: days)
    }

    /// An IPv4 or IPv6 address or a host name: letters, digits, `-`, `.` and `:`, at most 253 characters.
    static func isHost(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 253 && !text.hasPrefix("-")
            && text.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "-.:".unicodeScalars.contains($0) }
    }
}

/// What is wrong with a value given for a setting, as the end of a sentence that starts with where it was given.
struct SettingProblem: Error {
    /// `must be above 0 seconds`.
    var phrase: String
}
