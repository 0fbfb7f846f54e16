import Foundation
import TOMLKit

#if canImport(Glibc)
    import Glibc
#endif

/// Reads `config.toml` (TOML 1.0): bounded and strict. Every problem is named with the file, the line where it can be
/// told, and the key; an unknown key is an error, with the keys it may be a slip for, so that a typo never silently
/// does nothing.
enum ConfigurationFile {
    /// The largest file read: settings take a few hundred bytes, so anything near this is not a configuration.
    static let maxBytes = 64 << 10

    /// The settings the file at `path` gives; nil when there is no file.
    /// - Throws: ``ClientError`` `.invalidConfiguration` for a file that cannot be read, is too large, is not TOML,
    ///   or has an unknown key or a value of the wrong kind.
    static func read(_ path: String) throws(ClientError) -> [Setting: SettingValue]? {
        guard let bytes = try contents(path) else { return nil }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw invalid(path, "is not UTF-8 text") }
        // TOMLKit hands the text to C as a C string, which would end at a NUL and ignore the rest.
        if let nul = bytes.firstIndex(of: 0) { throw invalid(path, line: bytes[..<nul].count { $0 == 0x0A } + 1, "holds a NUL character") }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw invalid(path, line: error.source.begin.line, "is not valid TOML: \(error.description)")
        } catch {
            throw invalid(path, "is not valid TOML: \(error)")
        }
        return try settings(in: table, text: text, path: path)
    }

    /// The file's bytes, at most ``maxBytes``; nil when there is no file.
    static func contents(_ path: String) throws(ClientError) -> [UInt8]? {
        // Non-blocking: a FIFO put in its place must not hang every command.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ClientError(
                .invalidConfiguration, "Cannot read the configuration file \(path): \(String(cString: strerror(errno))).",
                remedy: "Make it readable by this user, or remove it.")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { throw invalid(path, "is not a regular file") }
        let bytes = try BoundedRead.bytes(from: descriptor, atMost: maxBytes, source: path)
        guard bytes.count <= maxBytes else {
            throw invalid(path, "holds \(max(Int(status.st_size), bytes.count)) bytes; a configuration file is at most \(maxBytes / 1024) KiB")
        }
        return bytes
    }

    /// The settings of a parsed file, or every problem of it at once.
    static func settings(in table: TOMLTable, text: String, path: String) throws(ClientError) -> [Setting: SettingValue] {
        var values: [Setting: SettingValue] = [:]
        var problems: [(line: Int?, text: String)] = []
        let locator = KeyLines(text)
        for section in table.keys.sorted() {
            guard let value = table[section] else { continue }
            let settings = Setting.all.filter { $0.section == section }
            guard !settings.isEmpty else {
                problems.append((locator.line(of: [section]), unknown(section)))
                continue
            }
            guard let entries = value.table else {
                problems.append((locator.line(of: [section]), "\(section) must be a table (a [\(section)] section), not \(describe(value))"))
                continue
            }
            for name in entries.keys.sorted() {
                guard let entry = entries[name] else { continue }
                let key = "\(section).\(name)"
                guard let setting = settings.first(where: { $0.name == name }) else {
                    problems.append((locator.line(of: [section, name]), unknown(key)))
                    continue
                }
                switch setting.value(entry) {
                case .success(let value): values[setting] = value
                case .failure(let problem): problems.append((locator.line(of: [section, name]), "\(key) \(problem.phrase); it is \(describe(entry))"))
                }
            }
        }
        guard !problems.isEmpty else { return values }
        let lines = problems.map { problem in (problem.line.map { "line \($0): " } ?? "") + problem.text }
        if lines.count == 1 {
            throw ClientError(.invalidConfiguration, "\(path), \(lines[0])\(lines[0].hasSuffix("?") ? "" : ".")", remedy: remedy)
        }
        throw ClientError(.invalidConfiguration, "\(path) has \(lines.count) problems:", details: lines, remedy: remedy)
    }

    static let remedy = "Correct or remove what is named; `parley config show --help` lists every setting."

    static func invalid(_ path: String, line: Int? = nil, _ problem: String) -> ClientError {
        ClientError(.invalidConfiguration, "\(path)\(line.map { ", line \($0):" } ?? "") \(problem).", remedy: remedy)
    }

    /// Why `key`, which is no setting, is refused, with the keys it may be a slip for.
    static func unknown(_ key: String) -> String {
        let lowered = key.lowercased()
        if lowered == "home" || lowered.hasSuffix(".home") {
            return "\(key): the home cannot be set in config.toml, which is found in it; use --home or PARLEY_HOME"
        }
        if ["secret", "password", "token", "credential", "access_key", "key_id"].contains(where: lowered.contains) {
            return
                "\(key) looks like a secret, and config.toml holds none: S3 credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
        }
        let name = String(key.split(separator: ".").last ?? "")
        var near = NearNames.near(key, in: Setting.all.map(\.key) + Setting.sections)
        // A name one slip off in another section only when nothing is one slip off as written.
        if near.isEmpty { near = Setting.all.filter { NearNames.isNear(name, $0.name) }.map(\.key) }
        if !near.isEmpty { return "unknown key \(key); did you mean \(near.joined(separator: " or "))?" }
        let section = key.split(separator: ".").first.map(String.init) ?? key
        let keys = Setting.all.filter { $0.section == section }.map(\.name)
        if key.contains("."), !keys.isEmpty { return "unknown key \(key); the keys of [\(section)] are \(keys.joined(separator: ", "))" }
        return "unknown key \(key); the sections are \(Setting.sections.map { "[\($0)]" }.joined(separator: ", "))"
    }

    /// A value as an error names it: `the string "1s"`, `an array`.
    static func describe(_ value: any TOMLValueConvertible) -> String {
        switch value.type {
        case .string: value.string.map { "the string \"\($0.count > 40 ? $0.prefix(40) + "…" : $0)\"" } ?? "a string"
        case .int: value.int.map { "the integer \($0)" } ?? "an integer"
        case .double: value.double.map { "the number \($0)" } ?? "a number"
        case .bool: value.bool.map { "\($0)" } ?? "a boolean"
        case .array: "an array"
        case .table: "a table"
        case .date, .time, .dateTime: "a date or time"
        }
    }
}

extension Setting {
    /// A value of `config.toml` as this setting's value. Seconds may be written as integers (`interval = 1`).
    func value(_ toml: any TOMLValueConvertible) -> Result<SettingValue, SettingProblem> {
        let parsed: SettingValue?
        switch kind {
        case .boolean: parsed = toml.type == .bool ? toml.bool.map(SettingValue.boolean) : nil
        case .seconds:
            parsed = toml.type == .int ? toml.int.map { .seconds(Double($0)) } : toml.type == .double ? toml.double.map(SettingValue.seconds) : nil
        case .port: parsed = toml.type == .int ? toml.int.map(SettingValue.integer) : nil
        case .host, .logLevel, .choice: parsed = toml.type == .string ? toml.string.map(SettingValue.text) : nil
        case .address: parsed = toml.type == .string ? toml.string.map { $0.lowercased() == "none" ? .unset : .text($0) } : nil
        case .retention: parsed = toml.type == .string ? toml.string.flatMap(Setting.retention(parsing:)) : nil
        }
        return checking(parsed)
    }
}

/// Finds the line that sets a key, for errors (TOMLKit tells lines for syntax errors only). It reads the common
/// forms (`name = …` under `[section]`, `section.name = …`, a `[section]` header) and answers only when exactly
/// one line matches: no line number is better than a wrong one.
struct KeyLines {
    /// Per line: the dotted key it sets or the table header it opens, with its line number.
    var entries: [(line: Int, key: String, isHeader: Bool)] = []

    init(_ text: String) {
        var table = ""
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                let inside = line.drop { $0 == "[" }.prefix { $0 != "]" }
                table = KeyLines.normalized(inside)
                entries.append((index + 1, table, true))
            } else if !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") {
                let key = KeyLines.normalized(line[..<equals])
                entries.append((index + 1, table.isEmpty ? key : "\(table).\(key)", false))
            }
        }
    }

    /// A dotted key without spaces or quotes.
    static func normalized(_ key: Substring) -> String {
        String(key.filter { $0 != " " && $0 != "\t" && $0 != "\"" && $0 != "'" })
    }

    /// The line of `path` (a section, or a section and a name): a section's header if it has one, else the one line
    /// that sets it or a key inside it.
    func line(of path: [String]) -> Int? {
        let key = path.joined(separator: ".")
        let headers = entries.filter { $0.isHeader && $0.key == key }
        if headers.count == 1 { return headers[0].line }
        // A key inside it, or an inline table that holds it (`bucket = { gzip = true }`).
        let matches = entries.filter { !$0.isHeader && ($0.key == key || $0.key.hasPrefix(key + ".") || key.hasPrefix($0.key + ".")) }
        return matches.count == 1 ? matches[0].line : nil
    }
}
