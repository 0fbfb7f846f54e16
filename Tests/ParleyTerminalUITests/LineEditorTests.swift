import ParleyTerminalUI
import Testing

@Suite struct LineEditorTests {
    @Test func `typing, cursor moves and deletions work on graphemes, wide or combined`() {
        var line = LineEditor()
        line.insert("héllo 👍🏽 世界")
        #expect(line.characters.count == 10)
        line.moveLeft()
        line.moveLeft()
        line.insert("!")
        #expect(line.text == "héllo 👍🏽 !世界")
        line.moveEnd()
        line.deleteBackward()
        #expect(line.text == "héllo 👍🏽 !世")
        line.moveHome()
        line.deleteForward()
        #expect(line.text == "éllo 👍🏽 !世")
        // e + combining acute is one grapheme.
        line.set("e\u{301}x")
        line.moveHome()
        line.deleteForward()
        #expect(line.text == "x")
    }

    @Test func `word jumps and word, start and end deletions behave as in a shell`() {
        var line = LineEditor()
        line.insert("send the report, please")
        line.moveWordLeft()
        #expect(line.cursor == 17)
        line.moveWordLeft()
        line.moveWordLeft()
        #expect(line.cursor == 5)
        line.moveWordRight()
        #expect(line.cursor == 8)
        line.deleteWordBackward()
        #expect(line.text == "send  report, please")
        line.deleteToEnd()
        #expect(line.text == "send ")
        line.insert("it")
        line.moveLeft()
        line.deleteToStart()
        #expect(line.text == "t")
        #expect(line.cursor == 0)
    }

    @Test func `history goes back through sent lines and returns to what was being typed`() {
        var line = LineEditor()
        for text in ["first", "second", "second"] {
            line.insert(text)
            _ = line.take()
        }
        #expect(line.history == ["first", "second"])
        line.insert("draft")
        line.historyBack()
        #expect(line.text == "second")
        line.historyBack()
        line.historyBack()
        #expect(line.text == "first")
        line.historyForward()
        line.historyForward()
        #expect(line.text == "draft")
        #expect(line.take() == "draft")
        #expect(line.isEmpty)
    }

    @Test func `a paste of several lines stays one message and shows its breaks`() {
        var line = LineEditor()
        line.insert("one\r\ntwo\rthree")
        #expect(line.text == "one\ntwo\nthree")
        #expect(line.view(width: 40).text == "one⏎two⏎three")
    }

    @Test func `the view keeps the cursor visible in a narrow line and counts wide characters as two columns`() {
        var line = LineEditor()
        line.insert("世界世界世界")
        let end = line.view(width: 7)
        #expect(end.text == "界世界")
        #expect(end.cursorColumn == 6)
        line.moveHome()
        let start = line.view(width: 7)
        #expect(start.text == "世界世")
        #expect(start.cursorColumn == 0)
        #expect(LineEditor().view(width: 5) == ("", 0))
    }

    @Test func `control characters typed or pasted are shown as symbols, never passed to the terminal`() {
        var line = LineEditor()
        line.insert("a\u{1b}[31mb\u{7}")
        let shown = line.view(width: 40).text
        #expect(!shown.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        #expect(shown == "a␛[31mb␇")
    }
}

@Suite struct TerminalWidthTests {
    @Test func `columns count wide characters, emoji and flags as two, combining marks with their letter`() {
        #expect(TerminalWidth.columns(of: "abc") == 3)
        #expect(TerminalWidth.columns(of: "世界") == 4)
        #expect(TerminalWidth.columns(of: "👍") == 2)
        #expect(TerminalWidth.columns(of: "👍🏽") == 2)
        #expect(TerminalWidth.columns(of: "👨‍👩‍👧") == 2)
        #expect(TerminalWidth.columns(of: "🇫🇷") == 2)
        #expect(TerminalWidth.columns(of: "e\u{301}") == 1)
        #expect(TerminalWidth.columns(of: "❤️") == 2)
    }

    @Test func `text from outside loses every control, bidi override and invisible character before reaching the terminal`() {
        let hostile = "\u{1b}]0;title\u{7}\u{1b}[2J\r\nname\u{202e}gpj.exe\u{200b}\u{85}end"
        let safe = TerminalWidth.safe(hostile)
        #expect(!safe.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || (0x202A...0x202E).contains($0.value) })
        #expect(!safe.unicodeScalars.contains("\u{200b}"))
        #expect(safe.contains("name"))
        #expect(TerminalWidth.columns(of: hostile) == TerminalWidth.columns(of: safe))
    }

    @Test func `wrapping breaks at spaces, never inside a wide character, and keeps line breaks`() {
        #expect(TerminalWidth.wrapped("the quick brown fox", width: 10) == ["the quick", "brown fox"])
        #expect(TerminalWidth.wrapped("世界世界世", width: 4) == ["世界", "世界", "世"])
        #expect(TerminalWidth.wrapped("a\nb", width: 10) == ["a", "b"])
        #expect(TerminalWidth.wrapped(String(repeating: "x", count: 25), width: 10).map(\.count) == [10, 10, 5])
        #expect(TerminalWidth.truncated("世界世界", to: 5) == "世界…")
    }
}
