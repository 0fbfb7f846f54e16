import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The node's directory, `$PARLEY_HOME` (default `~/.parley`): identity, secrets and the store.
public struct ParleyHome: Sendable {
    public let url: URL

    /// The home at `path`. Which home a command uses (`--home`, `PARLEY_HOME`, `~/.parley`) is decided by
    /// ``Configuration/home(flag:environment:)``.
    public init(path: String) {
        url = URL(fileURLWithPath: path)
    }

    public var path: String { url.path }
    public var identityPath: String { url.appendingPathComponent("identity.json").path }
    public var secretKeyPath: String { url.appendingPathComponent("device.key").path }
    public var storePath: String { url.appendingPathComponent("parley.sqlite").path }
    /// The node's blocks (``BlockStore``).
    public var blocksPath: String { url.appendingPathComponent("blocks").path }
    /// The node's settings (``Configuration``); optional.
    public var configPath: String { url.appendingPathComponent("config.toml").path }
    var lockPath: String { url.appendingPathComponent("node.lock").path }
    var syncLockPath: String { url.appendingPathComponent("sync.lock").path }

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

    /// Replaces the file at `path` with a new one holding `contents` and `mode` from its creation, renamed over the old
    /// one, so a crash leaves one or the other.
    public func replaceFile(atPath path: String, contents: [UInt8], mode: mode_t) throws {
        let temporary = path + ".new"
        try? FileManager.default.removeItem(atPath: temporary)
        try createFile(atPath: temporary, contents: contents, mode: mode)
        guard rename(temporary, path) == 0 else {
            throw ClientError(.io, "Cannot write \(path): \(String(cString: strerror(errno))).")
        }
    }

    /// Where a running node says how to reach its local API (port and token), owner-only.
    public var nodeInfoPath: String { url.appendingPathComponent("node.json").path }

    /// Creates the empty store file, owner-only before SQLite opens it (its -wal and -shm files copy the main file's
    /// mode): it holds message history and room keys.
    func createStoreFile() throws {
        try createFile(atPath: storePath, contents: [], mode: 0o600)
    }

    /// Takes the home's sync lock for as long as the returned lock lives: one process at a time syncs a home
    /// (`parley sync`, with or without `--watch`) or forgets a room in it. The lock is `flock` on `sync.lock`, so it
    /// goes with the process however that ends; the file names the holder for whoever finds it taken.
    /// - Parameter command: what this process is doing, for that message (`sync --watch`).
    /// - Throws: ``ClientError`` naming the process that holds it.
    public func lockForSyncing(_ command: String) throws -> HomeLock {
        let descriptor = open(syncLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ClientError(.io, "Cannot open \(syncLockPath): \(String(cString: strerror(errno))).") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = pread(descriptor, &buffer, buffer.count, 0)
            close(descriptor)
            guard code == EWOULDBLOCK else { throw ClientError(.io, "Cannot lock \(syncLockPath): \(String(cString: strerror(code))).") }
            let holder = String(decoding: buffer.prefix(max(0, count)), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            let pid = holder.prefix { $0.isNumber }
            let what = holder.dropFirst(pid.count).trimmingCharacters(in: .whitespaces)
            throw ClientError(
                .busy,
                "Another parley process is syncing \(path)\(pid.isEmpty ? "" : ": pid \(pid)")\(what.isEmpty ? "" : " (`parley \(what)`)").",
                remedy: pid.isEmpty ? "Wait for it to finish, or stop it." : "Stop it first (`kill \(pid)`), or let it do the syncing.")
        }
        let note = Array("\(getpid()) \(command)\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = note.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        return HomeLock(descriptor: descriptor)
    }

    /// Runs `body` holding the node's exclusive lock, so two `parley` processes never sign the same seq.
    func withLock<T>(_ body: () throws -> T) throws -> T {
        let lock = try lockForPublishing()
        return try withExtendedLifetime(lock) { try body() }
    }

    /// ``withLock(_:)`` for work that waits on a bucket meanwhile (a store started again, filling from its buckets).
    func withLockAsync<T>(_ body: () async throws -> T) async throws -> T {
        let lock = try await lockForPublishingAsync()
        defer { withExtendedLifetime(lock) {} }
        return try await body()
    }

    /// Takes the node's publishing lock (`node.lock`), waiting for it. A process must not take it twice: a second
    /// `flock` on another descriptor waits for the first.
    func lockForPublishing() throws -> HomeLock {
        let descriptor = try openLockFile()
        guard flock(descriptor, LOCK_EX) == 0 else {
            close(descriptor)
            throw ClientError(.io, "Cannot lock \(lockPath).")
        }
        return HomeLock(descriptor: descriptor)
    }

    /// ``lockForPublishing()`` for async code: it waits by suspending, never by blocking a thread of the cooperative
    /// pool. Rooms synced at once (`sync --watch`) each take the lock; blocked in `flock`, the waiting tasks could
    /// hold every pool thread while the holder, suspended on a bucket, could never run again to release it.
    func lockForPublishingAsync() async throws -> HomeLock {
        let descriptor = try openLockFile()
        var wait: UInt64 = 1_000_000
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                close(descriptor)
                throw ClientError(.io, "Cannot lock \(lockPath).")
            }
            do {
                try await Task.sleep(nanoseconds: wait)
            } catch {
                close(descriptor)
                throw error
            }
            wait = min(wait * 2, 50_000_000)
        }
        return HomeLock(descriptor: descriptor)
    }

    func openLockFile() throws -> Int32 {
        let descriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw ClientError(.io, "Cannot open \(lockPath): \(String(cString: strerror(errno))).") }
        return descriptor
    }
}

/// A lock on a home (``ParleyHome/lockForSyncing(_:)``), held until this value is released or the process ends.
public final class HomeLock: Sendable {
    let descriptor: Int32

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(descriptor) }
}
