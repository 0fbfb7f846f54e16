import ParleyClient
import Testing

@Suite struct TerminalTextTests {
    @Test(arguments: [
        ("\u{1B}[31mred", #"\x1b[31mred"#), ("a\nb\rc\td", #"a\nb\rc\td"#), ("\u{0}\u{7}\u{7F}", #"\x00\x07\x7f"#),
        ("\u{85}\u{9B}", #"\u{85}\u{9b}"#), ("abc\u{202E}exe.txt", #"abc\u{202e}exe.txt"#),
        ("\u{200E}\u{200F}\u{202A}\u{2066}\u{2069}\u{061C}", #"\u{200e}\u{200f}\u{202a}\u{2066}\u{2069}\u{61c}"#),
        ("line\u{2028}para\u{2029}", #"line\u{2028}para\u{2029}"#),
    ])
    func `control characters, bidirectional controls and line separators become visible escapes`(raw: String, shown: String) {
        #expect(TerminalText.escape(raw) == shown)
    }

    @Test func `a backslash is doubled, so that text spelling an escape cannot pass for one`() {
        #expect(TerminalText.escape(#"\x1b"#) == #"\\x1b"#)
        #expect(TerminalText.escape("\u{1B}") != TerminalText.escape(#"\x1b"#))
    }

    @Test func `ordinary Unicode, emoji with their joiners and tags, and combining marks are kept as they are`() {
        for text in ["Grüße, 日本語, עברית, العربية", "👩‍👩‍👧 🏴󠁧󠁢󠁳󠁣󠁴󠁿 👍🏽", "e\u{301} a\u{308}\u{323}", "zero\u{200B}width, non\u{200C}joiner"] {
            #expect(TerminalText.escape(text) == text)
        }
    }
}
