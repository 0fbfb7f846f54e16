import Foundation
import TOMLKit

/// Reads a relay's `relay.toml`: flat keys, bounded (64 KiB) and strict — an unknown key or a value of the wrong kind
/// is an error naming the file and the key, so that a typo never silently does nothing.
///
/// ```toml
/// listen = "0.0.0.0:8470"
/// data = "/var/lib/parley-relay"
/// public_url = "https://relay.example.net"
/// registration = "invite"
/// allow_origins = ["https://chat.example.net"]
/// ```
public enum RelayConfigurationFile {
    /// The keys the file may hold, with what each takes.
    public static let keys: [String: String] = [
        "listen": "a string HOST:PORT", "data": "a string (a folder)", "public_url": "a string (a URL)",
        "registration": "the string open, invite or closed", "allow_origins": "an array of strings", "log_level": "a string", "database": "a string",
        "max_connections_per_address": "an integer", "ping_interval_seconds": "an integer", "max_connections_per_account": "an integer",
        "max_queued_bytes": "an integer", "block_quota_mb": "an integer",
        "publish_events_per_second": "a number", "reads_per_second": "a number", "logins_per_address_per_minute": "a number",
        "publish_bytes_per_second": "a number",
        "tls_cert": "a string (a PEM file)",
        "tls_key": "a string (a PEM file)",
    ]

    /// What a file says, by key, as read.
    public struct Values: Sendable {
        public var strings: [String: String] = [:]
        public var integers: [String: Int] = [:]
        public var numbers: [String: Double] = [:]
        public var origins: [String]?
        public init() {}
    }

    /// The values of the file at `path`; `nil` when there is no file.
    /// - Throws: ``RelayError`` `invalid_configuration` saying what is wrong and where.
    public static func read(_ path: String) throws -> Values? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        func invalid(_ problem: String) -> RelayError {
            RelayError("invalid_configuration", "The relay configuration \(path) \(problem).", remedy: "Fix or remove it.", status: .internalServerError)
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw invalid("cannot be read") }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: 64 << 10 + 1)) ?? Data()
        guard data.count <= 64 << 10 else { throw invalid("is larger than 64 KiB") }
        guard let text = String(data: data, encoding: .utf8), !data.contains(0) else { throw invalid("is not UTF-8 text") }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw invalid("is not valid TOML: \(error)") }
        var values = Values()
        for key in table.keys.sorted() {
            guard let value = table[key], let wanted = keys[key] else {
                throw invalid("has an unknown key \(key); the keys are \(keys.keys.sorted().joined(separator: ", "))")
            }
            switch key {
            case "allow_origins":
                guard let array = value.array, array.allSatisfy({ $0.string != nil }) else { throw invalid("has \(key), which must be \(wanted)") }
                values.origins = array.compactMap(\.string)
            case "max_connections_per_address", "max_connections_per_account", "max_queued_bytes", "ping_interval_seconds", "block_quota_mb":
                guard let number = value.int, number > 0 else { throw invalid("has \(key), which must be a positive integer") }
                values.integers[key] = number
            case "publish_events_per_second", "publish_bytes_per_second", "logins_per_address_per_minute", "reads_per_second":
                guard let number = value.double ?? value.int.map(Double.init), number > 0 else { throw invalid("has \(key), which must be a positive number") }
                values.numbers[key] = number
            default:
                guard let string = value.string else { throw invalid("has \(key), which must be \(wanted)") }
                values.strings[key] = string
            }
        }
        return values
    }
}
