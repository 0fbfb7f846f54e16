import Foundation
import Logging
import ParleyBucket

/// Where a setting's value came from.
public enum SettingOrigin: Sendable, Equatable, CustomStringConvertible {
    /// A command-line flag (`--interval`).
    case flag(String)
    /// An environment variable (`PARLEY_SYNC_INTERVAL`).
    case environment(String)
    /// The configuration file at this path.
    case file(String)
    /// Nothing gave it: the built-in default.
    case builtIn

    /// `flag --interval`, `environment PARLEY_SYNC_INTERVAL`, `config.toml` or `default`.
    public var description: String {
        switch self {
        case .flag(let flag): "flag \(flag)"
        case .environment(let variable): "environment \(variable)"
        case .file: "config.toml"
        case .builtIn: "default"
        }
    }

    /// `flag`, `environment`, `file` or `default`: the `source` of `parley config show --json`.
    public var kind: String {
        switch self {
        case .flag: "flag"
        case .environment: "environment"
        case .file: "file"
        case .builtIn: "default"
        }
    }

    /// The flag, the variable or the file's path; nil for a default.
    public var name: String? {
        switch self {
        case .flag(let name), .environment(let name), .file(let name): name
        case .builtIn: nil
        }
    }
}

/// A node's settings (``Setting/all``), each taken from the first place that gives it: a command-line flag, then a
/// `PARLEY_*` environment variable, then `$PARLEY_HOME/config.toml`, then the built-in default. This is the one place
/// that reads them; commands and services take their values from here.
///
/// The home itself is no setting of `config.toml`, which it locates: it comes from `--home`, else `PARLEY_HOME`, else
/// `~/.parley` (``home(flag:environment:)``).
public struct Configuration: Sendable {
    public let home: ParleyHome
    /// Whether the home has a `config.toml`.
    public let fileExists: Bool
    let values: [Setting: SettingValue]
    /// Where each setting's value came from.
    public let origins: [Setting: SettingOrigin]
    /// `PARLEY_*` variables set in the environment that are no setting, but close to one's variable: probably a
    /// slip. Each with the variables it may stand for.
    public let misspelledVariables: [(variable: String, near: [String])]

    /// The path of the home's configuration file.
    public var filePath: String { home.configPath }

    /// The value `setting` takes.
    public subscript(setting: Setting) -> SettingValue { values[setting] ?? setting.defaultValue }

    /// Where `setting`'s value came from.
    public func origin(of setting: Setting) -> SettingOrigin { origins[setting] ?? .builtIn }

    /// The home: `flag` (`--home`), else `PARLEY_HOME`, else `~/.parley` (under `$HOME`, else the account's home
    /// directory); with where it came from.
    public static func home(flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> (home: ParleyHome, origin: SettingOrigin) {
        if let flag, !flag.isEmpty { return (ParleyHome(path: flag), .flag("--home")) }
        if let path = environment["PARLEY_HOME"], !path.isEmpty { return (ParleyHome(path: path), .environment("PARLEY_HOME")) }
        if let account = environment["HOME"], account.hasPrefix("/") {
            return (ParleyHome(path: URL(fileURLWithPath: account).appendingPathComponent(".parley").path), .builtIn)
        }
        return (ParleyHome(path: FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".parley").path), .builtIn)
    }

    /// Resolves every setting for `home`.
    /// - Parameter flags: the values this command's flags gave.
    /// - Throws: ``ClientError`` `.invalidConfiguration` naming the variable, or the file, line and key, whose value is
    ///   wrong; `.invalidArgument` for a flag's.
    public static func resolve(
        home: ParleyHome, flags: [Setting: SettingValue] = [:], environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ClientError) -> Configuration {
        let file = try ConfigurationFile.read(home.configPath)
        var values: [Setting: SettingValue] = [:]
        var origins: [Setting: SettingOrigin] = [:]
        for setting in Setting.all {
            if let value = flags[setting] {
                if let problem = setting.problem(with: value) {
                    throw ClientError(.invalidArgument, "\(setting.flag ?? setting.key) \(problem); it was \(value).")
                }
                (values[setting], origins[setting]) = (value, .flag(setting.flag ?? setting.key))
            } else if let text = environment[setting.environmentVariable], !text.isEmpty {
                let variable = setting.environmentVariable
                switch setting.value(parsing: text) {
                case .success(let value): (values[setting], origins[setting]) = (value, .environment(variable))
                case .failure(let problem):
                    throw ClientError(
                        .invalidConfiguration, "\(variable) \(problem.phrase); it is \"\(text.prefix(100))\".",
                        remedy: "Set it to \(setting.expected), or unset it (`unset \(variable)`).")
                }
            } else if let value = file?[setting] {
                (values[setting], origins[setting]) = (value, .file(home.configPath))
            }
        }
        let known = Set(Setting.all.map(\.environmentVariable) + ["PARLEY_HOME"])
        let misspelled = environment.keys.sorted().compactMap { variable -> (variable: String, near: [String])? in
            guard variable.hasPrefix("PARLEY_"), !known.contains(variable) else { return nil }
            let near = NearNames.near(variable, in: known.sorted())
            return near.isEmpty ? nil : (variable, near)
        }
        return Configuration(home: home, fileExists: file != nil, values: values, origins: origins, misspelledVariables: misspelled)
    }

    /// Seconds between polls of a bucket room under `parley sync --watch`.
    public var syncInterval: Double { seconds(.syncInterval) }

    /// Seconds an event may wait in the outbox under `parley sync --watch`.
    public var syncFlushInterval: Double { seconds(.syncFlushInterval) }

    /// How much `parley node` logs.
    public var nodeLogLevel: Logger.Level {
        guard case .text(let name) = self[.nodeLogLevel], let level = Logger.Level(rawValue: name) else { return .info }
        return level
    }

    /// Where `parley node` serves its local API.
    public var apiHost: String {
        guard case .text(let host) = self[.nodeAPIHost] else { return "127.0.0.1" }
        return host
    }

    /// The port of `parley node`'s local API; 0 for a free one.
    public var apiPort: Int {
        guard case .integer(let port) = self[.nodeAPIPort] else { return 0 }
        return port
    }

    /// Where `parley node` listens for peers (HOST:PORT), if anywhere.
    public var peersListen: String? {
        guard case .text(let address) = self[.peersListen] else { return nil }
        return address
    }

    /// How peers sync: `reconcile` or `bloom`.
    public var peersSync: String {
        guard case .text(let mode) = self[.peersSync] else { return "reconcile" }
        return mode
    }

    /// Seconds between a peer room's syncs with each peer.
    public var peersInterval: Double { seconds(.peersInterval) }

    /// The multicast group LAN discovery uses, when it is on.
    public var peersDiscover: String? {
        guard case .text(let group) = self[.peersDiscover] else { return nil }
        return group
    }

    /// Whether a running node fetches the files its peer rooms' messages share as they arrive.
    public var peersFetchFiles: Bool {
        guard case .boolean(let fetches) = self[.peersFetchFiles] else { return true }
        return fetches
    }

    /// The bucket transport's tunables: the defaults, with gzip, retention and the writing of archives from here.
    public var bucketSettings: BucketSettings {
        var settings = BucketSettings()
        if case .boolean(let gzip) = self[.bucketGzip] { settings.gzip = gzip }
        if case .retention(let mode, let days) = self[.bucketRetention] { settings.retention = Retention(mode: mode, days: days) }
        if case .boolean(let writes) = self[.bucketWriteArchives] { settings.writesArchives = writes }
        return settings
    }

    func seconds(_ setting: Setting) -> Double {
        guard case .seconds(let seconds) = self[setting] else { preconditionFailure("\(setting) holds \(self[setting]), not seconds") }
        return seconds
    }
}
