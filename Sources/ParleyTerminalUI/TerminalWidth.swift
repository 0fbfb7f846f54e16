import CNCurses
import Foundation

/// How many terminal columns text takes, and how text from outside is made safe to draw.
///
/// Widths come from the C library's `wcwidth` in a UTF-8 locale (East Asian wide characters and emoji take two
/// columns, combining marks none), taken per grapheme: a grapheme is as wide as its first scalar, two when it asks for
/// emoji presentation (U+FE0F) or is a flag, so an emoji with skin tone or joiners counts once.
public enum TerminalWidth {
    /// Puts the C library in the environment's locale, or in C.UTF-8 when that is not a UTF-8 one: ncurses and
    /// `wcwidth` only know wide characters in a UTF-8 locale. Call once, before either is used.
    public static func prepareLocale() {
        _ = localeReady
    }

    private static let localeReady: Bool = {
        setlocale(LC_ALL, "")
        let codeset = String(cString: nl_langinfo(nl_item(CODESET)))
        if codeset.uppercased().replacingOccurrences(of: "-", with: "") != "UTF8" { setlocale(LC_CTYPE, "C.UTF-8") }
        return true
    }()

    /// The columns `character` takes as ``safe(_:)`` draws it.
    public static func columns(of character: Character) -> Int {
        switch kind(of: character) {
        case .escaped(let escape): return escape.unicodeScalars.count
        case .invisible: return 1
        case .wide: return 2
        case .normal: return 1
        }
    }

    enum Kind {
        case escaped(String)
        case invisible
        case wide
        case normal
    }

    static func kind(of character: Character) -> Kind {
        prepareLocale()
        let scalars = character.unicodeScalars
        guard let first = scalars.first else { return .invisible }
        // A control starts the grapheme (CR LF is one): every scalar of it becomes a one-column symbol.
        if escapeFor(first) != nil { return .escaped(scalars.map { escapeFor($0) ?? "\u{FFFD}" }.joined()) }
        if scalars.contains("\u{FE0F}") || (0x1F1E6...0x1F1FF).contains(first.value) { return .wide }
        switch parley_wcwidth(first.value) {
        case 2: return .wide
        // Zero-width on its own (a zero-width space or joiner, a stray combining mark): drawn as a visible mark, so that
        // nothing hides in a name or a message and the columns add up.
        case 0: return .invisible
        default: return .normal
        }
    }

    /// The columns `text` takes.
    public static func columns(of text: some StringProtocol) -> Int {
        text.reduce(0) { $0 + columns(of: $1) }
    }

    /// `character` as it may reach the terminal: a control character (C0, DEL, C1), a bidirectional control or a line
    /// or paragraph separator becomes a visible symbol, so that text from outside can never move the cursor, recolour
    /// the screen or reorder what is shown.
    public static func safe(_ character: Character) -> String {
        switch kind(of: character) {
        case .escaped(let escape): return escape
        case .invisible: return "\u{FFFD}"
        case .wide, .normal:
            let scalars = character.unicodeScalars
            guard scalars.contains(where: { escapeFor($0) != nil }) else { return String(character) }
            return String(String.UnicodeScalarView(scalars.map { escapeFor($0) == nil ? $0 : "\u{FFFD}" }))
        }
    }

    /// `text` with every character made ``safe(_:)``.
    public static func safe(_ text: some StringProtocol) -> String {
        var result = ""
        for character in text { result += safe(character) }
        return result
    }

    /// `text` cut to at most `width` columns (wide characters are never split), with an ellipsis when cut.
    public static func truncated(_ text: some StringProtocol, to width: Int) -> String {
        guard width > 0 else { return "" }
        guard columns(of: text) > width else { return String(text) }
        var result = ""
        var used = 0
        for character in text {
            let columns = columns(of: character)
            if used + columns > width - 1 { break }
            result.append(character)
            used += columns
        }
        return result + "…"
    }

    /// `text` broken into lines of at most `width` columns, at spaces where possible; `\n` starts a new line.
    public static func wrapped(_ text: some StringProtocol, width: Int) -> [String] {
        guard width > 0 else { return [] }
        var lines: [String] = []
        for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = ""
            var used = 0
            var lastSpace: String.Index?
            for character in paragraph {
                let columns = columns(of: character)
                if used + columns > width {
                    if let space = lastSpace {
                        let rest = String(line[line.index(after: space)...])
                        lines.append(String(line[..<space]))
                        line = rest
                        used = self.columns(of: rest)
                    } else {
                        lines.append(line)
                        line = ""
                        used = 0
                    }
                    lastSpace = nil
                }
                if character == " " { lastSpace = line.endIndex }
                line.append(character)
                used += columns
            }
            lines.append(line)
        }
        return lines
    }

    static func escapeFor(_ scalar: Unicode.Scalar) -> String? {
        switch scalar.value {
        case 0x00...0x1F: return String(Unicode.Scalar(0x2400 + scalar.value)!)  // ␀…␟
        case 0x7F: return "␡"
        case 0x80...0x9F, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x061C: return "\u{FFFD}"
        default: return nil
        }
    }
}
