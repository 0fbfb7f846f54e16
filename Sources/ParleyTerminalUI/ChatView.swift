import Foundation

/// How a run of text is drawn.
public enum Style: Sendable, Equatable, Hashable {
    case normal, dim, bold, bar, selected, error, highlight
    /// A sender's name, in one of six colours chosen from the name.
    case sender(Int)
}

/// One line of the screen: runs of safe text with their styles, at most the screen's width.
public struct ScreenLine: Sendable, Equatable {
    public var runs: [(text: String, style: Style)] = []

    public init(_ runs: [(String, Style)] = []) { self.runs = runs.map { (text: $0.0, style: $0.1) } }

    public var text: String { runs.map(\.text).joined() }
    public var columns: Int { runs.reduce(0) { $0 + TerminalWidth.columns(of: $1.text) } }

    mutating func add(_ text: String, _ style: Style = .normal) { runs.append((text, style)) }

    /// The line cut to `width` columns, and padded to it with `fill`'s style when given.
    func fitted(to width: Int, fill: Style? = nil) -> ScreenLine {
        var result = ScreenLine()
        var used = 0
        for run in runs {
            let room = width - used
            guard room > 0 else { break }
            let columns = TerminalWidth.columns(of: run.text)
            if columns <= room {
                result.add(run.text, run.style)
                used += columns
            } else {
                let cut = TerminalWidth.truncated(run.text, to: room)
                result.add(cut, run.style)
                used += TerminalWidth.columns(of: cut)
            }
        }
        if let fill, used < width { result.add(String(repeating: " ", count: width - used), fill) }
        return result
    }

    public static func == (lhs: ScreenLine, rhs: ScreenLine) -> Bool {
        lhs.runs.map(\.text) == rhs.runs.map(\.text) && lhs.runs.map(\.style) == rhs.runs.map(\.style)
    }
}

/// A whole screen: its lines and where the cursor goes.
public struct Frame: Sendable, Equatable {
    public var lines: [ScreenLine]
    public var cursor: (row: Int, column: Int)

    public static func == (lhs: Frame, rhs: Frame) -> Bool { lhs.lines == rhs.lines && lhs.cursor == rhs.cursor }

    /// The screen as plain text, for tests.
    public var text: String { lines.map(\.text).joined(separator: "\n") }
}

/// Draws a ``ChatModel`` in a terminal of a given size: a title bar, the room list (when the terminal is wide
/// enough), the timeline, a typing line, a status line and the input line. Everything from outside is made safe here.
public enum ChatView {
    public static let roomListMinimumWidth = 60

    public static func frame(_ model: ChatModel, width: Int, height: Int, now: Date = Date(), timeZone: TimeZone = .current) -> Frame {
        guard width >= 4, height >= 3 else {
            return Frame(lines: (0..<max(height, 0)).map { _ in ScreenLine([(String(repeating: " ", count: max(width, 0)), .normal)]) }, cursor: (0, 0))
        }
        var lines: [ScreenLine] = []
        lines.append(titleBar(model, width: width))
        let bodyHeight = height - 3
        let listWidth = width >= roomListMinimumWidth ? min(26, width / 4) : 0
        let timelineWidth = width - (listWidth > 0 ? listWidth + 1 : 0)
        let rooms = roomList(model, width: listWidth, height: bodyHeight)
        let timeline =
            model.panel.isEmpty
            ? timelineLines(model, width: timelineWidth, height: bodyHeight, now: now, timeZone: timeZone)
            : panelLines(model, width: timelineWidth, height: bodyHeight)
        for row in 0..<bodyHeight {
            var line = ScreenLine()
            if listWidth > 0 {
                line.runs += rooms[row].fitted(to: listWidth, fill: .normal).runs
                line.add("│", .dim)
            }
            line.runs += timeline[row].fitted(to: timelineWidth, fill: .normal).runs
            lines.append(line)
        }
        lines.append(statusLine(model, width: width, now: now))
        let prompt = model.replyingTo != nil ? "reply> " : "> "
        let view = model.input.view(width: max(1, width - prompt.count))
        lines.append(ScreenLine([(prompt, .bold), (view.text, .normal)]).fitted(to: width, fill: .normal))
        return Frame(lines: lines, cursor: (height - 1, min(width - 1, prompt.count + view.cursorColumn)))
    }

    static func titleBar(_ model: ChatModel, width: Int) -> ScreenLine {
        var line = ScreenLine()
        if let room = model.room {
            line.add(" " + TerminalWidth.safe(room.title) + (room.encrypted ? " 🔒" : ""), .bar)
            line.add("  \(room.members) member\(room.members == 1 ? "" : "s")", .bar)
        } else {
            line.add(" Parley — no room yet: /create ROOM or /join CODE", .bar)
        }
        return line.fitted(to: width, fill: .bar)
    }

    static func roomList(_ model: ChatModel, width: Int, height: Int) -> [ScreenLine] {
        var lines: [ScreenLine] = []
        guard width > 0 else { return Array(repeating: ScreenLine(), count: height) }
        // The selected room stays in view in a long list.
        let selected = model.rooms.firstIndex { $0.id == model.selectedRoom } ?? 0
        let first = max(0, min(selected - height / 2, model.rooms.count - height))
        for room in model.rooms.dropFirst(first).prefix(height) {
            var line = ScreenLine()
            let current = room.id == model.selectedRoom
            let badge = room.mentions > 0 ? " @\(room.mentions)" : room.unread > 0 ? " \(room.unread)" : ""
            let title = TerminalWidth.truncated(TerminalWidth.safe(room.title), to: max(1, width - 1 - badge.count - (room.encrypted ? 2 : 0)))
            line.add(" " + title + (room.encrypted ? " 🔒" : ""), current ? .selected : room.unread > 0 ? .bold : .normal)
            if !badge.isEmpty { line.add(badge, room.mentions > 0 ? .error : .highlight) }
            lines.append(current ? line.fitted(to: width, fill: .selected) : line)
        }
        while lines.count < height { lines.append(ScreenLine()) }
        return lines
    }

    static func panelLines(_ model: ChatModel, width: Int, height: Int) -> [ScreenLine] {
        var lines = model.panel.flatMap { TerminalWidth.wrapped(TerminalWidth.safe($0), width: max(1, width - 1)) }.map { ScreenLine([(" " + $0, .normal)]) }
        lines.append(ScreenLine([(" (any key returns to the room)", .dim)]))
        if lines.count > height { lines = Array(lines.prefix(height)) }
        while lines.count < height { lines.append(ScreenLine()) }
        return lines
    }

    /// The timeline's lines that fit, the newest at the bottom, `model.scroll` lines up.
    static func timelineLines(_ model: ChatModel, width: Int, height: Int, now: Date, timeZone: TimeZone) -> [ScreenLine] {
        let items = model.roomItems
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        var lines: [ScreenLine] = []
        let needed = height + model.scroll
        // From the newest back, only as many items as the screen and the scroll need.
        var index = items.count - 1
        var blocks: [[ScreenLine]] = []
        var count = 0
        while index >= 0, count < needed + 1 {
            let item = items[index]
            var block = Self.lines(for: item, in: items, model: model, width: width, calendar: calendar)
            let date = Date(timeIntervalSince1970: Double(item.timestampMs) / 1000)
            if index == 0 || !calendar.isDate(date, inSameDayAs: Date(timeIntervalSince1970: Double(items[index - 1].timestampMs) / 1000)) {
                block.insert(daySeparator(date, width: width, timeZone: timeZone), at: 0)
            }
            blocks.append(block)
            count += block.count
            index -= 1
        }
        if index < 0 {
            let start = model.selectedRoom.map { model.reachedStart.contains($0) } ?? true
            blocks.append([ScreenLine([(start ? "  — the start of what this node holds of the room —" : "  (PgUp loads older messages)", .dim)])])
        }
        lines = blocks.reversed().flatMap { $0 }
        let end = max(0, lines.count - model.scroll)
        var visible = Array(lines[max(0, end - height)..<end])
        while visible.count < height { visible.insert(ScreenLine(), at: 0) }
        return visible
    }

    static func daySeparator(_ date: Date, width: Int, timeZone: TimeZone) -> ScreenLine {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "EEE d MMM yyyy"
        let label = " \(formatter.string(from: date)) "
        let side = max(2, (width - label.count) / 2)
        return ScreenLine([(String(repeating: "─", count: side) + label + String(repeating: "─", count: side), .dim)])
    }

    static func lines(for item: ChatItem, in items: [ChatItem], model: ChatModel, width: Int, calendar: Calendar) -> [ScreenLine] {
        let date = Date(timeIntervalSince1970: Double(item.timestampMs) / 1000)
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let time = String(format: "%02d:%02d ", parts.hour ?? 0, parts.minute ?? 0)
        let selected = item.eventID == model.selectedEvent
        let sender = TerminalWidth.safe(item.sender)
        let indent = String(repeating: " ", count: time.count + 2)
        var result: [ScreenLine] = []
        if let parent = item.parentEventID, item.isMessage {
            let quoted = items.first { $0.eventID == parent }
            let text =
                quoted.map { "\(TerminalWidth.safe($0.sender)): \(TerminalWidth.safe(($0.body ?? "message deleted").prefix(60)))" } ?? "a message not loaded"
            result.append(ScreenLine([(indent + "↳ " + text, .dim)]))
        }
        guard item.isMessage else {
            let summary = TerminalWidth.safe(item.summary ?? "\(item.sender) changed the room")
            for (index, text) in TerminalWidth.wrapped(summary, width: max(1, width - time.count - 2)).enumerated() {
                result.append(ScreenLine([((index == 0 ? time + "* " : indent) + text, .dim)]))
            }
            return result
        }
        var head = ScreenLine([(time, selected ? .selected : .dim)])
        let body: String
        var bodyStyle = Style.normal
        if item.redacted {
            body = "message deleted"
            bodyStyle = .dim
        } else if item.undecryptable {
            body = "encrypted message: this device has no key for it yet"
            bodyStyle = .dim
        } else {
            body = TerminalWidth.safe(item.body ?? "")
        }
        let emote = item.msgtype == "emote" && !item.redacted
        head.add(emote ? "* \(sender) " : "\(sender): ", .sender(colour(of: item.sender)))
        let sent = model.sent.contains(item.eventID) || !item.pending
        let receipt = model.receipts[item.eventID] == "read" || item.receipt == "read" ? "read" : model.receipts[item.eventID] ?? item.receipt
        let mark =
            item.sender != model.me
            ? "" : receipt == "read" ? " ✓✓ read" : receipt != nil ? " ✓✓" : model.failed[item.eventID] != nil ? " ✗" : sent ? " ✓" : " ·"
        let routing = item.redacted ? "" : (item.priority.map { " [\($0)]" } ?? "") + (item.forwarded.map { " (\(TerminalWidth.safe($0)))" } ?? "")
        let suffix = routing + (item.edited && !item.redacted ? " (edited)" : "") + mark
        let first = width - head.columns
        var bodyLines = TerminalWidth.wrapped(body, width: max(1, first))
        if bodyLines.count > 1 {
            // Continuation lines are indented under the text, wrapped to what is left.
            let rest = bodyLines.dropFirst().joined(separator: " ")
            bodyLines = [bodyLines[0]] + TerminalWidth.wrapped(rest, width: max(1, width - indent.count))
        }
        head.add(bodyLines.first ?? "", selected ? .selected : bodyStyle)
        if bodyLines.count == 1 { head.add(suffix, .dim) }
        result.append(head)
        for (index, text) in bodyLines.dropFirst().enumerated() {
            var line = ScreenLine([(indent + text, selected ? .selected : bodyStyle)])
            if index == bodyLines.count - 2 { line.add(suffix, .dim) }
            result.append(line)
        }
        if !item.reactions.isEmpty, !item.redacted {
            let text = item.reactions.map { "[\(TerminalWidth.safe($0.key)) \($0.users.count)]" }.joined(separator: " ")
            result.append(ScreenLine([(indent + text, .highlight)]))
        }
        return result
    }

    static func statusLine(_ model: ChatModel, width: Int, now: Date) -> ScreenLine {
        var line = ScreenLine()
        line.add(model.connected ? " ● connected" : " ○ reconnecting…", model.connected ? .bar : .error)
        let elsewhere = model.rooms.filter { $0.id != model.selectedRoom }.reduce(0) { $0 + $1.unread }
        if elsewhere > 0 { line.add("  \(elsewhere) unread elsewhere", .bar) }
        let typists = model.typists(at: now)
        if !typists.isEmpty {
            line.add("  " + typists.map(TerminalWidth.safe).joined(separator: ", ") + (typists.count == 1 ? " is typing…" : " are typing…"), .bar)
        }
        if model.scroll > 0 { line.add("  ↑ scrolled back (End returns)", .bar) }
        if let notice = model.notice { line.add("  " + TerminalWidth.safe(notice), model.noticeIsError ? .error : .bar) }
        return line.fitted(to: width, fill: .bar)
    }

    /// A colour for a sender, the same every time.
    static func colour(of user: String) -> Int {
        Int(user.unicodeScalars.reduce(UInt32(7)) { ($0 &* 31) &+ $1.value } % 6) + 1
    }
}
