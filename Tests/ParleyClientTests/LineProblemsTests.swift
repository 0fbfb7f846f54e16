import ParleyClient
import ParleySync
import Testing

@Suite struct LineProblemsTests {
    @Test func `the first lines of a reason are shown and the rest counted, whatever numbers each line names`() {
        var problems = LineProblems()
        for line in 1...1000 { problems.add("held back: waiting for seq \(line) of device abc… (a gap in its chain)", line: line) }
        #expect(
            problems.report == (1...10).map { "line \($0): held back: waiting for seq \($0) of device abc… (a gap in its chain)" } + [
                "1,000 lines: held back …; first 10 shown"
            ])
    }

    @Test func `reasons told apart are bounded: lines of further reasons are only counted`() {
        var problems = LineProblems()
        for index in 0..<25 { problems.add("reason \(String(UnicodeScalar(UInt8(97 + index))))", line: index + 1) }
        #expect(problems.shown.count == 20)
        #expect(problems.summaries == ["5 lines for other reasons, not shown"])
    }

    @Test func `an input is not events only when its first 100 lines are all invalid`() {
        var junk = InputScreen()
        for line in 1...99 { junk.record(line: line, problem: "invalid JSON: x") }
        #expect(!junk.isNotEvents)
        junk.record(line: 100, problem: "invalid JSON: x")
        #expect(junk.isNotEvents)
        #expect(junk.verdict == "its first 100 lines are all invalid (line 1: invalid JSON: x)")
        var events = InputScreen()
        events.record(line: 1, problem: nil)
        for line in 2...500 { events.record(line: line, problem: "invalid JSON: x") }
        #expect(!events.isNotEvents)
    }
}
