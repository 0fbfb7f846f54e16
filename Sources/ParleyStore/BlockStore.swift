import Foundation
import ParleyCore

/// A node's blocks (docs/PROTOCOL.md §16): one file per block, named by its id under a folder of its first two hex
/// digits, so each block is stored once however many messages name it. Blocks are immutable: a block is written to a
/// temporary file, synced and linked into place, and never rewritten; one whose bytes do not hash to its name is
/// refused on the way in and treated as missing on the way out.
public final class BlockStore: Sendable {
    public let path: String

    /// The store in folder `path`, created (mode 0700) if missing.
    /// - Throws: ``StoreError`` `.io` when the folder cannot be made.
    public init(path: String) throws {
        self.path = path
        guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
            throw StoreError(
                .io, "Cannot create the block folder \(path): \(String(cString: strerror(errno))).", remedy: "Check that its parent is yours and writable.")
        }
    }

    func folder(of id: BlockID) -> String { "\(path)/\(id.hex.prefix(2))" }
    /// The file of block `id` (present or not).
    public func file(of id: BlockID) -> String { "\(folder(of: id))/\(id.hex)" }

    /// Whether the store holds `id`.
    public func contains(_ id: BlockID) -> Bool { access(file(of: id), F_OK) == 0 }

    /// The block's bytes, or `nil` when the store does not hold it (or holds bytes that are not it: dropped).
    /// - Throws: ``StoreError`` `.io` when it cannot be read.
    public func read(_ id: BlockID) throws -> [UInt8]? {
        let file = file(of: id)
        let descriptor = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw StoreError(.io, "Cannot read block \(file): \(String(cString: strerror(errno))).")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size <= BlockTier.huge.byteCount else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, $0.count - done, off_t(done)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw StoreError(.io, "Cannot read block \(file): \(count < 0 ? String(cString: strerror(errno)) : "it ended early").") }
            done += count
        }
        guard BlockID.of(bytes) == id else {
            // Damaged on disk: gone, so that it is fetched again rather than refused for ever.
            unlink(file)
            return nil
        }
        return bytes
    }

    /// Stores a block unless it is held already.
    /// - Parameter durable: sync it to disk before returning (a block this node's own message needs); blocks fetched
    ///   from elsewhere can be fetched again and skip the sync.
    /// - Throws: ``StoreError`` `.invalidArgument` for bytes that are not the block `id`; `.io` (`.full` when the disk
    ///   is full) when it cannot be written.
    public func write(_ bytes: [UInt8], id: BlockID, durable: Bool) throws {
        guard BlockTier.allCases.contains(where: { $0.byteCount == bytes.count }), BlockID.of(bytes) == id else {
            throw StoreError(.invalidArgument, "The bytes given as block \(id.hex.prefix(16))… are not that block.")
        }
        try writeChecked(bytes, id: id, durable: durable)
    }

    /// ``write(_:id:durable:)`` for a block just sealed here, whose id is known to be its hash.
    public func write(_ block: SealedBlock, durable: Bool) throws {
        try writeChecked(block.bytes, id: block.id, durable: durable)
    }

    private func writeChecked(_ bytes: [UInt8], id: BlockID, durable: Bool) throws {
        let target = file(of: id)
        if access(target, F_OK) == 0 { return }
        let folder = folder(of: id)
        guard mkdir(folder, 0o700) == 0 || errno == EEXIST else { throw ioError("create \(folder)") }
        let temporary = "\(folder)/.tmp-\(UInt64.random(in: 0...UInt64.max))"
        // Readable by others (blocks are sealed; the home itself is 0700): a folder bucket may link the file as its object.
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw ioError("create \(temporary)") }
        defer { unlink(temporary) }
        do {
            defer { close(descriptor) }
            var done = 0
            while done < bytes.count {
                let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + done, $0.count - done) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw ioError("write \(temporary)") }
                done += count
            }
            if durable, fsync(descriptor) != 0 { throw ioError("sync \(temporary)") }
        }
        // A link never replaces: a block another writer put there first is the same bytes.
        guard link(temporary, target) == 0 || errno == EEXIST else { throw ioError("link \(target)") }
        if durable {
            let directory = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if directory >= 0 {
                fsync(directory)
                close(directory)
            }
        }
    }

    /// Makes blocks written without a sync durable, all at once: a sync per block as it is written made sealing wait
    /// on the disk a thousand times per GiB; synced after the last is written, they go to disk together.
    /// - Throws: ``StoreError`` `.io` when the disk reports a failure.
    public func sync(_ ids: [BlockID]) throws {
        var folders: Set<String> = []
        for id in ids {
            let file = file(of: id)
            let descriptor = open(file, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw ioError("open \(file)") }
            defer { close(descriptor) }
            guard fsync(descriptor) == 0 else { throw ioError("sync \(file)") }
            folders.insert(folder(of: id))
        }
        for folder in folders {
            let descriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard descriptor >= 0 else { throw ioError("open \(folder)") }
            defer { close(descriptor) }
            guard fsync(descriptor) == 0 || errno == EINVAL else { throw ioError("sync \(folder)") }
        }
    }

    /// Removes a block (its message was redacted, or it was fetched only to be read once).
    public func remove(_ id: BlockID) {
        unlink(file(of: id))
    }

    private func ioError(_ what: String) -> StoreError {
        let code = errno
        if code == ENOSPC || code == EDQUOT {
            return StoreError(.io, "The disk holding \(path) is full (\(what)).", remedy: "Free some space, then try again: nothing done so far is lost.")
        }
        return StoreError(.io, "Cannot \(what): \(String(cString: strerror(code))).", remedy: "Check that \(path) is yours and writable.")
    }
}
