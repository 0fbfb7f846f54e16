import Foundation
import ParleyCore

#if canImport(Glibc)
    import Glibc
#endif

/// Reading passphrases: from a file for scripts, else from the terminal without echo.
public enum Passphrase {
    /// The shortest passphrase accepted for protecting keys.
    public static let minimumLength = 8

    /// The first line of `path`, without its line break.
    public static func read(fromFile path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClientError(.io, "Cannot read the passphrase file \(path).")
        }
        let line = Array(data.prefix { $0 != 0x0A })
        return line.last == 0x0D ? Array(line.dropLast()) : line
    }

    /// Asks on the terminal (`/dev/tty`) with echo off.
    public static func prompt(_ question: String) throws -> [UInt8] {
        let tty = open("/dev/tty", O_RDWR | O_CLOEXEC)
        guard tty >= 0 else {
            throw ClientError(.invalidArgument, "No terminal to ask for a passphrase.", remedy: "Give --passphrase-file PATH.")
        }
        defer { close(tty) }
        var saved = termios()
        let hasTerminal = tcgetattr(tty, &saved) == 0
        if hasTerminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(tty, TCSAFLUSH, &quiet)
        }
        defer { if hasTerminal { tcsetattr(tty, TCSAFLUSH, &saved) } }
        _ = question.withCString { write(tty, $0, strlen($0)) }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(tty, &byte, 1) == 1, byte != 0x0A { line.append(byte) }
        _ = write(tty, "\n", 1)
        return line.last == 0x0D ? Array(line.dropLast()) : line
    }
}
