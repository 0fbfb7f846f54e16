/// Object keys, checked before any key or local path is built from them.
public enum ObjectKey {
    /// Longest key S3 accepts, in UTF-8 bytes.
    public static let maxLength = 1024

    /// Why `key` cannot name an object, or `nil` when it can: `/`-separated non-empty components of printable
    /// characters, none of them `.` or `..`, and no backslash, `%` or NUL that a folder or a URL could reinterpret.
    public static func problem(with key: String) -> String? {
        if key.isEmpty { return "empty key" }
        if key.utf8.count > maxLength { return "key longer than \(maxLength) bytes" }
        for byte in key.utf8 {
            switch byte {
            case 0: return "key contains NUL"
            case UInt8(ascii: "\\"): return "key contains a backslash"
            case UInt8(ascii: "%"): return "key contains %"
            case ..<0x20, 0x7F: return "key contains a control character"
            default: continue
            }
        }
        for component in key.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { return "key has an empty path component" }
            if component == "." || component == ".." { return "key has a \(component) component" }
        }
        return nil
    }

    /// Checks a key built from a prefix (which may end with `/`) the same way.
    static func check(_ key: String) throws(BucketError) {
        if let problem = problem(with: key) { throw BucketError(.invalidKey, "Refused object key \(debugQuoted(key)): \(problem).") }
    }

    static func checkPrefix(_ prefix: String) throws(BucketError) {
        guard !prefix.isEmpty else { return }
        let trimmed = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        try check(trimmed)
    }

    /// A key shown in a message: quoted, and cut at 200 characters. Control characters are left for the printer to
    /// escape (`TerminalText` in ParleyClient, at the terminal), so that they are escaped once, and `--json` output
    /// keeps the key as it is.
    public static func debugQuoted(_ key: String) -> String {
        "\"" + String(String.UnicodeScalarView(key.unicodeScalars.prefix(200))) + (key.unicodeScalars.count > 200 ? "…\"" : "\"")
    }
}
