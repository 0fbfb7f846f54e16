import CArgon2
import Foundation
import ParleyCore

#if canImport(Glibc)
    import Glibc
#endif

/// Argon2id (RFC 9106) cost parameters, as a key backup or a passphrase-protected invite records them.
public struct Argon2idParameters: Sendable, Equatable {
    public var memoryKiB: UInt32
    public var iterations: UInt32
    public var parallelism: UInt32

    public init(memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32) {
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
    }

    /// What this node writes: above OWASP's recommended minimum (19 MiB, 2 passes, 1 lane) in memory and passes;
    /// about a quarter of a second here.
    public static let standard = Argon2idParameters(memoryKiB: 64 * 1024, iterations: 3, parallelism: 1)

    /// Why a file's parameters are refused: too weak to protect a passphrase, or so costly that a hostile file could
    /// exhaust the machine. `nil` when acceptable.
    public var problem: String? {
        if memoryKiB < 19 * 1024 || iterations < 2 || parallelism < 1 {
            return "Argon2id parameters below the minimum (19 MiB, 2 passes, 1 lane)"
        }
        if memoryKiB > 1024 * 1024 || iterations > 64 || parallelism > 16 {
            return "Argon2id parameters above what this node computes (1 GiB, 64 passes, 16 lanes)"
        }
        return nil
    }

    var jsonObject: JSONObject {
        JSONObject([
            "algorithm": "argon2id", "memory_kib": .integer(Int64(memoryKiB)), "iterations": .integer(Int64(iterations)),
            "parallelism": .integer(Int64(parallelism)),
        ])
    }

    init?(json: JSONObject) {
        guard json["algorithm"] == .string("argon2id"), case .integer(let memory)? = json["memory_kib"],
            case .integer(let iterations)? = json["iterations"], case .integer(let parallelism)? = json["parallelism"],
            let memory = UInt32(exactly: memory), let iterations = UInt32(exactly: iterations), let parallelism = UInt32(exactly: parallelism)
        else { return nil }
        self.init(memoryKiB: memory, iterations: iterations, parallelism: parallelism)
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt`: `byteCount` bytes of key.
    public func deriveKey(passphrase: [UInt8], salt: [UInt8], byteCount: Int = 32) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: byteCount)
        let status = passphrase.withUnsafeBytes { secret in
            salt.withUnsafeBytes { saltBytes in
                output.withUnsafeMutableBytes { out in
                    argon2id_hash_raw(
                        iterations, memoryKiB, parallelism, secret.baseAddress, secret.count, saltBytes.baseAddress, saltBytes.count,
                        out.baseAddress, out.count)
                }
            }
        }
        guard status == ARGON2_OK.rawValue else {
            throw ClientError(.io, "Argon2id failed: \(String(cString: argon2_error_message(status))).")
        }
        return output
    }
}

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
