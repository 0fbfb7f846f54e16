import Foundation
import ParleyCore

/// The bounds every input is held to, whatever it holds: a file to import or verify, a bucket object. A wrong file
/// or a hostile object of millions of junk lines must cost a few lines of output and a few rows of storage, not one
/// of each per line.
public enum InputBounds {
    /// An input whose first this many non-empty lines are all invalid is not Parley events: it is given up on.
    public static let screenedLines = 100
    /// Invalid lines of one input kept in the rejected-events log; the rest are counted in one entry.
    public static let loggedInvalidLines = 100
    /// Lines of each reason shown word for word; the rest of that reason are counted.
    public static let shownPerReason = 10
    /// Reasons told apart in one input; lines of further reasons are only counted.
    public static let distinctReasons = 20
    /// Lines verified and stored together, in one transaction: large enough to amortize the commit's fsync, small
    /// enough to keep memory flat.
    public static let batchLines = 2048
    /// A batch also ends at this many bytes of input, so hostile 1 MiB lines cannot make three batches in flight
    /// hold gigabytes.
    public static let batchBytes = 8 << 20
    /// How far ahead of this device's clock an event may be dated before it is flagged (not refused), and how far
    /// ahead a device request may be made.
    public static let maxClockLeadMs: Int64 = 300_000
}

/// Tells from an input's first lines whether it is Parley events at all, so that a binary, a log of another program
/// or a hostile object is given up on at once instead of being read, reported and logged line by line.
public struct InputScreen: Sendable {
    /// Invalid lines seen before any valid one.
    public private(set) var leadingInvalid = 0
    /// Whether a line that is an event has been seen: the input is events, whatever follows.
    public private(set) var sawEvent = false
    /// The first invalid line and its problem, to name in the verdict.
    public private(set) var firstProblem: (line: Int, problem: String)?
    /// The line that showed the input is not events.
    public private(set) var decidingLine: Int?

    public init() {}

    /// Whether the input's first lines were all invalid: it is not Parley events.
    public var isNotEvents: Bool { !sawEvent && leadingInvalid >= InputBounds.screenedLines }

    /// Records one non-empty line: an event (it parsed and verified) or not, with why not.
    /// - Returns: whether the input is now known not to be Parley events.
    @discardableResult
    public mutating func record(line: Int, problem: String?) -> Bool {
        guard !sawEvent, !isNotEvents else { return isNotEvents }
        if let problem {
            leadingInvalid += 1
            if firstProblem == nil { firstProblem = (line, problem) }
            if isNotEvents { decidingLine = line }
        } else {
            sawEvent = true
        }
        return isNotEvents
    }

    /// "its first 100 lines are all invalid (line 1: invalid JSON: …)".
    public var verdict: String {
        "its first \(leadingInvalid) lines are all invalid" + (firstProblem.map { " (line \($0.line): \($0.problem))" } ?? "")
    }
}

/// Problems of the lines of one input, bounded: the first few lines of each reason are kept word for word and the
/// rest only counted, so a million bad lines make eleven lines of report ("line 12: …" ten times, then
/// "999,990 lines: invalid JSON …; first 10 shown").
public struct LineProblems: Sendable {
    /// A problem kept word for word.
    public struct Shown: Sendable {
        /// 1-based, or `nil` for a problem of the whole input.
        public var line: Int?
        public var problem: String
    }

    struct Reason: Sendable {
        var text: String
        var count = 0
        var shown = 0
    }

    public private(set) var shown: [Shown] = []
    var reasons: [Reason] = []
    var reasonIndex: [String: Int] = [:]
    /// Problems whose reason came after ``InputBounds/distinctReasons`` others: counted only.
    var unsorted = 0
    /// The last problem added and its reason's index: a flood repeats one text, whose reason need not be worked out
    /// again for every line.
    var last: (problem: String, index: Int?)?

    public init() {}

    /// Adds the problem of one line (or, with `line` nil, of the whole input).
    /// - Returns: whether it is one of those shown; the caller prints it now or later, as it likes.
    @discardableResult
    public mutating func add(_ problem: String, line: Int?) -> Bool {
        let found: Int?
        if let last, last.problem == problem {
            found = last.index
        } else {
            found = index(of: LineProblems.reason(of: problem))
            last = (problem, found)
        }
        guard let index = found else {
            unsorted += 1
            return false
        }
        reasons[index].count += 1
        guard reasons[index].shown < InputBounds.shownPerReason else { return false }
        reasons[index].shown += 1
        shown.append(Shown(line: line, problem: problem))
        return true
    }

    /// The index of `reason` among the reasons told apart, adding it if there is room; `nil` when there is none.
    mutating func index(of reason: String) -> Int? {
        if let known = reasonIndex[reason] { return known }
        guard reasons.count < InputBounds.distinctReasons else { return nil }
        reasons.append(Reason(text: reason))
        reasonIndex[reason] = reasons.count - 1
        return reasons.count - 1
    }

    /// The problems shown in line order ("line 12: …", or the bare problem of the whole input), then the summaries.
    public var report: [String] {
        shown.sorted { ($0.line ?? Int.max) < ($1.line ?? Int.max) }.map { shown in (shown.line.map { "line \($0): " } ?? "") + shown.problem }
            + summaries
    }

    /// One line per reason that had more problems than were shown: "2,000 lines: not authorized …; first 10 shown".
    public var summaries: [String] {
        var lines = reasons.filter { $0.count > $0.shown }.map { "\(grouped($0.count)) lines: \($0.text); first \($0.shown) shown" }
        if unsorted > 0 { lines.append("\(grouped(unsorted)) lines for other reasons, not shown") }
        return lines
    }

    /// What lines with the same kind of problem share: the text before its last ": " (so "rejected: invalid JSON:
    /// unexpected `x` (at byte 0)" is "rejected: invalid JSON …"), with numbers (sizes, sequence numbers, offsets)
    /// taken out.
    static func reason(of problem: String) -> String {
        var text = Substring(problem)
        var cut = false
        if let last = text.range(of: ": ", options: .backwards) {
            text = text[..<last.lowerBound]
            cut = true
        }
        var result = ""
        var inNumber = false
        for character in text {
            if character.isASCII && character.isNumber {
                if !inNumber { result += "…" }
                inNumber = true
            } else {
                result.append(character)
                inNumber = false
            }
        }
        return cut ? result + " …" : result
    }
}

/// `1234567` as "1,234,567": counts in reports are read by people.
public func grouped(_ number: Int) -> String {
    let digits = String(number.magnitude)
    var result = ""
    for (index, digit) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { result += "," }
        result.append(digit)
    }
    return (number < 0 ? "-" : "") + result
}

/// The note for an event dated more than ``InputBounds/maxClockLeadMs`` ahead of `nowMs`, or `nil`. Timestamps are
/// claims (docs/PROTOCOL.md §12.1): such an event is flagged, never judged differently.
public func aheadOfClock(timestampMs: Int64, nowMs: Int64) -> String? {
    let lead = timestampMs - nowMs
    guard lead > InputBounds.maxClockLeadMs else { return nil }
    return "dated \(duration(ms: lead)) ahead of this device's clock"
}

/// A duration in the largest unit that fits, rounded: "5 minutes", "3 hours", "2 days".
public func duration(ms: Int64) -> String {
    let minute: Int64 = 60_000
    let hour = 60 * minute
    let day = 24 * hour
    let (unit, name) = ms >= day ? (day, "day") : ms >= hour ? (hour, "hour") : (minute, "minute")
    let count = (ms + unit / 2) / unit
    return "\(grouped(Int(count))) \(name)\(count == 1 ? "" : "s")"
}
