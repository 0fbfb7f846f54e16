import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The node's directory, `$PARLEY_HOME` (default `~/.parley`): identity, secrets and the store.
public struct ParleyHome: Sendable {
    public let url: URL

    /// Resolves the home directory: an explicit path, else `PARLEY_HOME`, else `~/.parley` (`$HOME`, else the
    /// account's home directory).
    public init(path: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let path, !path.isEmpty {
            url = URL(fileURLWithPath: path)
        } else if let fromEnvironment = environment["PARLEY_HOME"], !fromEnvironment.isEmpty {
            url = URL(fileURLWithPath: fromEnvironment)
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            url = URL(fileURLWithPath: home).appendingPathComponent(".parley")
        } else {
            url = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".parley")
        }
    }

    public var path: String { url.path }
    public var identityPath: String { url.appendingPathComponent("identity.json").path }
    public var secretKeyPath: String { url.appendingPathComponent("device.key").path }
    public var storePath: String { url.appendingPathComponent("parley.sqlite").path }
    var lockPath: String { url.appendingPathComponent("node.lock").path }

    /// Creates the directory, readable by its owner only.
    public func create() throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ClientError(.io, "Cannot create the Parley home directory \(path): \(error.localizedDescription).")
        }
    }

    /// Writes a new file that must not exist yet, with `mode` from its creation (never briefly world-readable),
    /// and syncs it to disk.
    public func createFile(atPath path: String, contents: [UInt8], mode: mode_t) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw ClientError(.io, "Cannot create \(path): \(String(cString: strerror(errno))).")
        }
        defer { close(descriptor) }
        var written = 0
        while written < contents.count {
            let result = contents[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard result > 0 else { throw ClientError(.io, "Cannot write \(path): \(String(cString: strerror(errno))).") }
            written += result
        }
        guard fsync(descriptor) == 0 else { throw ClientError(.io, "Cannot sync \(path): \(String(cString: strerror(errno))).") }
    }

    /// Runs `body` holding the node's exclusive lock, so two `parley` processes never sign the same seq.
    func withLock<T>(_ body: () throws -> T) throws -> T {
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ClientError(.io, "Cannot open \(lockPath): \(String(cString: strerror(errno))).") }
        defer { close(descriptor) }
        guard flock(descriptor, LOCK_EX) == 0 else { throw ClientError(.io, "Cannot lock \(lockPath).") }
        defer { flock(descriptor, LOCK_UN) }
        return try body()
    }
}
