import ArgumentParser
import Foundation
import ParleyClient

/// How times are shown: local time with its offset from UTC (honouring `TZ`), or UTC with `--utc`.
struct TimeOptions: ParsableArguments {
    @Flag(help: "Show times in UTC (marked UTC) rather than in local time.") var utc = false

    /// Reads `TZ` (or the system's zone) once: `localtime_r`, unlike `localtime`, need not.
    static let zone: Void = tzset()

    /// `2025-10-09 10:53:20 +0200` in local time, or `2025-10-09 08:53:20 UTC` with `--utc`. From the C library's
    /// calendar: Foundation's date formatters would load ICU.
    func format(_ timestampMs: Int64) -> String {
        var seconds = time_t(min(max(timestampMs, 0), EventID.maxTimestampMs) / 1000)
        var parts = tm()
        if utc {
            gmtime_r(&seconds, &parts)
        } else {
            _ = TimeOptions.zone
            localtime_r(&seconds, &parts)
        }
        func digits(_ value: Int32, _ count: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, count - text.count)) + text
        }
        let date = digits(parts.tm_year + 1900, 4) + "-" + digits(parts.tm_mon + 1, 2) + "-" + digits(parts.tm_mday, 2)
        let clock = digits(parts.tm_hour, 2) + ":" + digits(parts.tm_min, 2) + ":" + digits(parts.tm_sec, 2)
        guard !utc else { return "\(date) \(clock) UTC" }
        let offset = Int32(parts.tm_gmtoff / 60)
        return "\(date) \(clock) \(offset < 0 ? "-" : "+")\(digits(abs(offset) / 60, 2))\(digits(abs(offset) % 60, 2))"
    }
}

/// Timeline items as lines for a person: time, sender, text, markers and event id on the first line; a message's
/// further lines follow, indented. Every item's first line starts with its time (or a room id), so no line of a
/// message can pass for an item of its own; `output(_:)` escapes what is left inside each line.
struct TimelineText {
    let node: Node
    let time: TimeOptions
    /// Before each further line of a message.
    static let indent = "    "
    /// How many characters of the message a reply answers are quoted.
    static let quoteLength = 40

    /// The lines of `item`, the first after `prefix`; with `firstLineOnly`, a message's first line and `…` when it has more;
    /// `mark`, this device's message's delivery (``Node/deliveryMarks(_:items:)``), after its reactions.
    func lines(_ item: TimelineItem, prefix: String = "", firstLineOnly: Bool = false, mark: DeliveryMark? = nil) throws -> [String] {
        var head: String
        var more: [Substring] = []
        if let summary = item.summary {
            head = "* \(summary)"
        } else if item.redacted {
            head = "\(item.senderID): [deleted]"
        } else if item.undecryptable {
            head = "\(item.senderID): [encrypted: this device has no key for it yet]"
        } else {
            var text = item.body ?? "[content unavailable]"
            if let file = item.file {
                text = TerminalText.fileLine(
                    name: file.name, size: file.size, width: file.width.map(Int64.init), height: file.height.map(Int64.init), caption: item.body)
            }
            let body = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            head = item.messageKind == .emote ? "* \(item.senderID) \(body[0])" : "\(item.senderID): \(body[0])"
            more = body.dropFirst().map { $0 }
        }
        if firstLineOnly && !more.isEmpty {
            head += " …"
            more = []
        }
        if let forwarded = item.forwarded { head += " " + TimelineText.forwardMark(forwarded) }
        if item.priority > .normal { head += " [\(item.priority.rawValue)]" }
        if item.edited { head += " (edited)" }
        if let parent = item.parentEventID { head += " " + (try quote(parent)) }
        let reactions = item.reactions.keys.sorted().map { "\($0)×\(item.reactions[$0]!.count)" }
        if !reactions.isEmpty { head += "  [" + reactions.joined(separator: " ") + "]" }
        if let mark { head += "  " + mark.label }
        return ["\(prefix)\(time.format(item.timestampMs))  \(head)  \(item.eventID)"] + more.map { TimelineText.indent + $0 }
    }

    /// `(forwarded from alice, checked)`: whose message this forwards, and what comparing it with the original found.
    static func forwardMark(_ forwarded: Forwarded) -> String {
        let check =
            switch forwarded.check {
            case .matches?: "checked against the original"
            case .differs?: "DOES NOT MATCH the original"
            case .unavailable?, nil: "original not held here"
            }
        return "(forwarded from \(forwarded.reference.senderID), \(check))"
    }

    /// What a reply answers: `(reply to bob: "the start of its first line…")`, or `(reply to a message not held)`.
    func quote(_ eventID: String) throws -> String {
        let parents = try node.items(eventID: eventID)
        guard let parent = parents.first else { return "(reply to a message not held)" }
        // Which one it answers cannot be told: say so rather than quote whichever sorts first.
        guard parents.count == 1 else { return "(reply to an id \(parents.count) events carry: a device copied it)" }
        let text: String
        if let summary = parent.summary {
            text = summary
        } else if parent.redacted {
            text = "[deleted]"
        } else if let body = parent.body {
            let firstLine = body.prefix { !$0.isNewline }
            // An ellipsis says there is more: the line was cut, or other lines follow it.
            let quoted = TerminalText.shortened(firstLine, limit: TimelineText.quoteLength)
            text = "\"" + quoted + (firstLine.count <= TimelineText.quoteLength && firstLine.count < body.count ? "…" : "") + "\""
        } else {
            text = "[encrypted]"
        }
        return "(reply to \(parent.senderID): \(text))"
    }
}
