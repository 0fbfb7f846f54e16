import CNCurses
import Foundation

/// A key or a paste, as the chat understands it.
public enum Key: Sendable, Equatable {
    case text(String)
    case paste(String)
    case enter, tab, backspace, delete, escape
    case left, right, up, down, home, end, pageUp, pageDown
    case wordLeft, wordRight
    /// Shift or Alt with Up/Down: the message selection.
    case selectOlder, selectNewer
    /// Ctrl with a letter (`"a"` for Ctrl-A).
    case control(Character)
    case resize
}

/// The terminal through ncursesw: the alternate screen, keys decoded (bracketed paste included), lines drawn only
/// where they changed, colours unless `NO_COLOR` is set, and the terminal given back as it was on every way out —
/// a normal exit, SIGINT, SIGTERM or SIGHUP, and a crash.
final class Terminal {
    private var previous: [ScreenLine] = []
    private var colours = false
    private var pending: [UInt32] = []

    func start() {
        TerminalWidth.prepareLocale()
        CrashGuard.install()
        initscr()
        raw()
        noecho()
        nonl()
        keypad(parley_stdscr(), true)
        nodelay(parley_stdscr(), true)
        set_escdelay(25)
        if ProcessInfo.processInfo.environment["NO_COLOR"].map({ !$0.isEmpty }) != true, has_colors() {
            start_color()
            use_default_colors()
            colours = true
            init_pair(1, Int16(COLOR_WHITE), Int16(COLOR_BLUE))  // bars
            init_pair(2, Int16(COLOR_BLACK), Int16(COLOR_CYAN))  // selection
            init_pair(3, Int16(COLOR_RED), -1)  // errors, mentions
            init_pair(4, Int16(COLOR_YELLOW), -1)  // reactions, unread
            for (index, colour) in [COLOR_GREEN, COLOR_MAGENTA, COLOR_CYAN, COLOR_YELLOW, COLOR_BLUE, COLOR_RED].enumerated() {
                init_pair(Int16(10 + index + 1), Int16(colour), -1)
            }
        }
        // Bracketed paste: a paste arrives between markers, so its line breaks do not send it line by line.
        FileHandle.standardOutput.write(Data("\u{1b}[?2004h".utf8))
        previous = []
    }

    func stop() {
        FileHandle.standardOutput.write(Data("\u{1b}[?2004l".utf8))
        endwin()
        CrashGuard.restore()
    }

    var size: (width: Int, height: Int) { (Int(parley_cols()), Int(parley_lines())) }

    /// Draws `frame`, writing only the lines that differ from the last frame drawn.
    func draw(_ frame: Frame) {
        if previous.count != frame.lines.count {
            previous = []
            clear()
        }
        for (row, line) in frame.lines.enumerated() where row >= previous.count || previous[row] != line {
            move(Int32(row), 0)
            for run in line.runs {
                let attributes = attributes(for: run.style)
                attrset(attributes)
                _ = run.text.withCString { addstr($0) }
            }
            attrset(0)
            // A line of the full width leaves ncurses' cursor on the next row: clearing there would erase it.
            if line.columns < size.width { clrtoeol() }
        }
        previous = frame.lines
        move(Int32(frame.cursor.row), Int32(frame.cursor.column))
        refresh()
    }

    /// Forgets what is on the screen, so that the next frame is drawn whole (after a resize, or Ctrl-L).
    func invalidate() {
        previous = []
        clearok(parley_stdscr(), true)
    }

    private func attributes(for style: Style) -> Int32 {
        let reverse = Int32(bitPattern: UInt32(truncatingIfNeeded: 1 << 18))  // A_REVERSE
        let bold = Int32(bitPattern: UInt32(truncatingIfNeeded: 1 << 21))  // A_BOLD
        let dim = Int32(bitPattern: UInt32(truncatingIfNeeded: 1 << 20))  // A_DIM
        guard colours else {
            switch style {
            case .bar, .selected: return reverse
            case .bold, .error, .highlight: return bold
            case .dim: return dim
            case .normal, .sender: return 0
            }
        }
        switch style {
        case .normal: return 0
        case .dim: return dim
        case .bold: return bold
        case .bar: return parley_color_pair(1)
        case .selected: return parley_color_pair(2)
        case .error: return parley_color_pair(3) | bold
        case .highlight: return parley_color_pair(4)
        case .sender(let index): return parley_color_pair(Int16(10 + index)) | bold
        }
    }

    /// The keys typed since the last call (none when nothing waits).
    func keys() -> [Key] {
        var raw: [(code: UInt32, isKey: Bool)] = []
        var character: wint_t = 0
        while true {
            let result = wget_wch(parley_stdscr(), &character)
            if result == ERR { break }
            raw.append((UInt32(character), result == KEY_CODE_YES))
        }
        return decode(raw)
    }

    private func decode(_ raw: [(code: UInt32, isKey: Bool)]) -> [Key] {
        var keys: [Key] = []
        var index = 0
        var text = ""
        func flush() {
            if !text.isEmpty { keys.append(.text(text)) }
            text = ""
        }
        func scalarString(_ code: UInt32) -> String { Unicode.Scalar(code).map { String(Character($0)) } ?? "" }
        while index < raw.count {
            let (code, isKey) = raw[index]
            index += 1
            if isKey {
                flush()
                if let key = Self.named(Int32(code)) { keys.append(key) }
                continue
            }
            switch code {
            case 0x1B:
                flush()
                let rest = raw[index...].prefix(5).map { $0.isKey ? 0 : $0.code }
                if rest.starts(with: Array("[200~".unicodeScalars.map(\.value))) {
                    // A paste: everything up to the end marker, as it came.
                    index += 5
                    var pasted = ""
                    while index < raw.count {
                        if raw[index].code == 0x1B, raw[(index + 1)...].prefix(5).map(\.code) == Array("[201~".unicodeScalars.map(\.value)) {
                            index += 6
                            break
                        }
                        pasted += scalarString(raw[index].code)
                        index += 1
                    }
                    keys.append(.paste(pasted))
                } else if let next = rest.first, next == 0x62 || next == 0x66 {  // Alt-B, Alt-F
                    keys.append(next == 0x62 ? .wordLeft : .wordRight)
                    index += 1
                } else {
                    keys.append(.escape)
                }
            case 0x0D, 0x0A:
                flush()
                keys.append(.enter)
            case 0x09:
                flush()
                keys.append(.tab)
            case 0x7F, 0x08:
                flush()
                keys.append(.backspace)
            case 0x01...0x1A:
                flush()
                keys.append(.control(Character(Unicode.Scalar(code + 0x60)!)))
            default:
                text += scalarString(code)
            }
        }
        flush()
        return keys
    }

    static func named(_ code: Int32) -> Key? {
        switch code {
        case KEY_LEFT: return .left
        case KEY_RIGHT: return .right
        case KEY_UP: return .up
        case KEY_DOWN: return .down
        case KEY_HOME: return .home
        case KEY_END: return .end
        case KEY_PPAGE: return .pageUp
        case KEY_NPAGE: return .pageDown
        case KEY_BACKSPACE: return .backspace
        case KEY_DC: return .delete
        case KEY_ENTER: return .enter
        case KEY_RESIZE: return .resize
        case KEY_SR: return .selectOlder
        case KEY_SF: return .selectNewer
        default:
            guard let name = keyname(code).map({ String(cString: $0) }) else { return nil }
            switch name {
            case "kLFT5", "kLFT3": return .wordLeft
            case "kRIT5", "kRIT3": return .wordRight
            case "kUP2", "kUP3": return .selectOlder
            case "kDN2", "kDN3": return .selectNewer
            default: return nil
            }
        }
    }
}

/// Gives the terminal back if the process dies of a signal that ncurses cannot clean up after: the saved terminal
/// modes are restored with `tcsetattr` (safe in a signal handler) and the alternate screen left, then the signal takes
/// its default course.
enum CrashGuard {
    nonisolated(unsafe) static var saved = termios()
    nonisolated(unsafe) static var hasSaved = false

    static func install() {
        hasSaved = tcgetattr(STDIN_FILENO, &saved) == 0
        for signal in [SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGTRAP, SIGFPE] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                CrashGuard.reset()
                Glibc.signal(number, SIG_DFL)
                raise(number)
            }
            action.sa_flags = Int32(bitPattern: UInt32(SA_RESETHAND))
            sigaction(signal, &action, nil)
        }
    }

    static func restore() {
        for signal in [SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGTRAP, SIGFPE] { Glibc.signal(signal, SIG_DFL) }
    }

    /// Only async-signal-safe calls.
    static func reset() {
        let sequence: StaticString = "\u{1b}[?2004l\u{1b}[0m\u{1b}[?25h\u{1b}[?1049l\r\n"
        _ = write(STDOUT_FILENO, sequence.utf8Start, sequence.utf8CodeUnitCount)
        if hasSaved { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }
}
