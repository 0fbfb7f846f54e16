/// The terminal UI's input line, edited as a shell line is: cursor keys, home and end, word jumps and deletions,
/// history, and pastes of several lines (kept as one message). It works on graphemes, so a wide character, an emoji
/// with its joiners or a letter with combining marks moves and deletes as one, and it knows how many columns each takes.
public struct LineEditor: Sendable, Equatable {
    /// The text, one grapheme per element.
    public private(set) var characters: [Character] = []
    /// Where the cursor stands: before `characters[cursor]`, or at the end.
    public private(set) var cursor = 0
    /// Lines sent before, oldest first, at most ``historyLimit``.
    public private(set) var history: [String] = []
    private var browsing: Int?
    private var draft: [Character] = []

    public static let historyLimit = 500

    public init() {}

    /// The text as a string.
    public var text: String { String(characters) }
    public var isEmpty: Bool { characters.isEmpty }

    /// Replaces the text (the cursor goes to its end), as when editing a message sent before.
    public mutating func set(_ text: String) {
        characters = Array(text)
        cursor = characters.count
        browsing = nil
    }

    /// Inserts typed or pasted text at the cursor; line breaks of a paste stay in the message (`\r\n` and `\r` become `\n`).
    public mutating func insert(_ text: String) {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        let new = Array(normalized)
        characters.insert(contentsOf: new, at: cursor)
        cursor += new.count
        browsing = nil
    }

    public mutating func moveLeft() { cursor = max(0, cursor - 1) }
    public mutating func moveRight() { cursor = min(characters.count, cursor + 1) }
    public mutating func moveHome() { cursor = 0 }
    public mutating func moveEnd() { cursor = characters.count }

    /// To the start of the word before the cursor (as Alt-B or Ctrl-Left in a shell).
    public mutating func moveWordLeft() { cursor = wordStart(before: cursor) }

    /// To the end of the word after the cursor (as Alt-F or Ctrl-Right).
    public mutating func moveWordRight() {
        var index = cursor
        while index < characters.count, !isWordCharacter(characters[index]) { index += 1 }
        while index < characters.count, isWordCharacter(characters[index]) { index += 1 }
        cursor = index
    }

    public mutating func deleteBackward() {
        guard cursor > 0 else { return }
        characters.remove(at: cursor - 1)
        cursor -= 1
    }

    public mutating func deleteForward() {
        guard cursor < characters.count else { return }
        characters.remove(at: cursor)
    }

    /// Deletes the word before the cursor (Ctrl-W).
    public mutating func deleteWordBackward() {
        let start = wordStart(before: cursor)
        characters.removeSubrange(start..<cursor)
        cursor = start
    }

    /// Deletes from the cursor to the end (Ctrl-K).
    public mutating func deleteToEnd() { characters.removeSubrange(cursor...) }

    /// Deletes from the start to the cursor (Ctrl-U).
    public mutating func deleteToStart() {
        characters.removeSubrange(..<cursor)
        cursor = 0
    }

    /// The line sent before the one shown (Up); what was being typed comes back after the newest.
    public mutating func historyBack() {
        guard !history.isEmpty else { return }
        let index: Int
        if let browsing {
            guard browsing > 0 else { return }
            index = browsing - 1
        } else {
            draft = characters
            index = history.count - 1
        }
        browsing = index
        characters = Array(history[index])
        cursor = characters.count
    }

    /// The line sent after the one shown (Down).
    public mutating func historyForward() {
        guard let browsing else { return }
        if browsing + 1 < history.count {
            self.browsing = browsing + 1
            characters = Array(history[browsing + 1])
        } else {
            self.browsing = nil
            characters = draft
        }
        cursor = characters.count
    }

    /// Takes the text to send: it goes into the history (unless it repeats the last line) and the line empties.
    public mutating func take() -> String {
        let text = self.text
        if !text.isEmpty, history.last != text {
            history.append(text)
            if history.count > Self.historyLimit { history.removeFirst(history.count - Self.historyLimit) }
        }
        characters = []
        cursor = 0
        browsing = nil
        draft = []
        return text
    }

    /// What to draw in `width` columns: the text made safe (a line break shows as ⏎), scrolled so that the cursor is
    /// visible, and the cursor's column.
    public func view(width: Int) -> (text: String, cursorColumn: Int) {
        guard width > 0 else { return ("", 0) }
        let cells = characters.map { $0 == "\n" ? ("⏎", 1) : (TerminalWidth.safe($0), TerminalWidth.columns(of: $0)) }
        // The first character shown: as far left as lets everything up to the cursor, and the cursor's cell, fit.
        var start = cursor
        var used = 1
        while start > 0, used + cells[start - 1].1 <= width {
            start -= 1
            used += cells[start].1
        }
        var shown = ""
        var column = 0
        var cursorColumn = 0
        for index in start..<cells.count {
            if index == cursor { cursorColumn = column }
            guard column + cells[index].1 <= width else { break }
            shown += cells[index].0
            column += cells[index].1
        }
        if cursor == cells.count { cursorColumn = column }
        return (shown, cursorColumn)
    }

    private func wordStart(before index: Int) -> Int {
        var index = index
        while index > 0, !isWordCharacter(characters[index - 1]) { index -= 1 }
        while index > 0, isWordCharacter(characters[index - 1]) { index -= 1 }
        return index
    }

    private func isWordCharacter(_ character: Character) -> Bool { !character.isWhitespace && !character.isPunctuation }
}
