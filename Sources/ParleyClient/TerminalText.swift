/// Text from outside (room names, topics, user ids, message bodies, reasons, object keys, file names, error details
/// that quote input) made safe to put on a terminal.
///
/// A name holding ESC could recolour the terminal, move the cursor or rewrite what was printed before it; a newline or
/// carriage return could start a line that looks like output of ours; a bidirectional control could make text read
/// in another order than it is stored. Each of these becomes a visible escape that says what it was, and a backslash
/// is doubled so that an escape can never be confused with text that spells one. Ordinary Unicode (letters of any
/// script, emoji with their joiners and tags, combining marks) is kept as it is.
public enum TerminalText {
    /// `text` with every control character, bidirectional control and line or paragraph separator replaced by a
    /// visible escape: `\n`, `\r`, `\t`, `\x1b` (other C0 controls and DEL), `\u{85}` (C1 controls), `\u{202e}`
    /// (bidirectional controls, U+2028 and U+2029); `\` becomes `\\`.
    public static func escape(_ text: some StringProtocol) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return String(text) }
        var result = ""
        result.reserveCapacity(text.utf8.count + 16)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: result += "\\x" + hex(scalar.value, digits: 2)
            default: result += "\\u{" + String(scalar.value, radix: 16) + "}"
            }
        }
        return result
    }

    /// A size for a person: bytes, KiB, MiB or GiB with one decimal.
    public static func byteCount(_ bytes: Int64) -> String {
        switch bytes {
        case ..<1024: "\(bytes) bytes"
        case ..<(1 << 20): String(format: "%.1f KiB", Double(bytes) / 1024)
        case ..<(1 << 30): String(format: "%.1f MiB", Double(bytes) / 1_048_576)
        default: String(format: "%.1f GiB", Double(bytes) / 1_073_741_824)
        }
    }

    /// How a message sharing a file shows as text: `[file: NAME, SIZE[, W×H]]`, then the caption when it is not the name.
    public static func fileLine(name: String, size: Int64, width: Int64?, height: Int64?, caption: String?) -> String {
        let dimensions = width.flatMap { width in height.map { ", \(width)×\($0)" } } ?? ""
        let described = "[file: \(name), \(byteCount(size))\(dimensions)]"
        guard let caption, caption != name else { return described }
        return "\(described) \(caption)"
    }

    public static func shortened(_ text: some StringProtocol, limit: Int = 40) -> String {
        text.count <= limit ? String(text) : String(text.prefix(limit - 1)) + "…"
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x5C, 0x00..<0x20, 0x7F..<0xA0: true
        // Arabic letter mark, left-to-right and right-to-left marks, embeddings and overrides, isolates.
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        // Line and paragraph separators: some terminals and viewers break lines at them.
        case 0x2028, 0x2029: true
        default: false
        }
    }

    static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
