import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A folder used as a bucket (`file:///path`): local, NFS, or kept in sync by Dropbox or Syncthing.
///
/// Writes are create-only, atomic and durable: the bytes go to a temporary file in the target folder, which is
/// fsynced, then hard-linked to its name (which fails if the name exists, so nothing is ever replaced), and the
/// folder is fsynced. A reader never sees a partial object.
///
/// The store never leaves its root: every folder below it is opened relative to its parent with `O_NOFOLLOW`, so a
/// symbolic link anywhere inside the bucket (to `/`, to `.`, to a file elsewhere) is neither listed, read nor written
/// through, and only regular files are objects. The root itself may be reached through links: that path is the
/// user's choice. A root that does not exist is an error, never an empty bucket: a mistyped path or an unmounted disk
/// must not look like a room with nothing new.
public struct FolderStore: ObjectStore {
    public let root: String

    /// Temporary files start with this; listings skip them.
    static let temporaryPrefix = ".parley-tmp-"

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public var location: String { "file://\(root)" }

    func path(of key: String) -> String { "\(root)/\(key)" }

    /// Creates the bucket folder if it does not exist yet: only its last folder, unless `intermediateFolders`, so a
    /// mistyped path fails instead of growing a tree of folders nobody meant.
    /// - Throws: ``BucketError`` `.noSuchBucket` naming the missing parent; `.invalidURL` when the path is a file.
    public func createRoot(intermediateFolders: Bool) throws(BucketError) {
        var info = stat()
        if stat(root, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw BucketError(.invalidURL, "\(root) is not a folder, so it cannot be a folder bucket.") }
            return
        }
        var missing: [String] = []
        var current = root
        while !current.isEmpty, stat(current, &info) != 0 {
            missing.append(current)
            current = FolderStore.parent(of: current)
        }
        if missing.count > 1 && !intermediateFolders {
            throw BucketError(
                .noSuchBucket, "Cannot create the bucket folder \(root): the folder it would be in, \(FolderStore.parent(of: root)), does not exist.")
        }
        for created in missing.reversed() {
            if mkdir(created, 0o755) != 0 && errno != EEXIST { throw posixError("create folder \(created)") }
            // The new folder's entry must be durable too, or a crash could lose the files written inside it.
            let parent = open(FolderStore.parent(of: created).isEmpty ? "/" : FolderStore.parent(of: created), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard parent >= 0 else { throw posixError("open folder \(FolderStore.parent(of: created))") }
            defer { close(parent) }
            try syncFolder(parent, path: FolderStore.parent(of: created))
        }
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    public func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try ObjectKey.check(key)
        let components = key.split(separator: "/")
        let name = String(components.last!)
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        let folder = try openFolder(components.dropLast(), under: rootFolder, creating: true)!
        defer { close(folder) }
        let folderPath = FolderStore.parent(of: path(of: key))
        let temporary = "\(FolderStore.temporaryPrefix)\(UInt64.random(in: 0...UInt64.max))"
        let descriptor = openat(folder, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw posixError("create \(folderPath)/\(temporary)") }
        defer { unlinkat(folder, temporary, 0) }
        do {
            defer { close(descriptor) }
            try writeAll(descriptor, bytes, path: "\(folderPath)/\(temporary)")
            guard fsync(descriptor) == 0 else { throw posixError("fsync \(folderPath)/\(temporary)") }
        }
        // linkat without AT_SYMLINK_FOLLOW: an existing name, a link included, is never replaced or followed.
        if linkat(folder, temporary, folder, name, 0) == 0 {
            try syncFolder(folder, path: folderPath)
            return .created
        }
        guard errno == EEXIST else { throw posixError("link \(path(of: key))") }
        do {
            return try readFile(name, in: folder, key: key, maxBytes: bytes.count) == bytes ? .alreadyIdentical : .conflict
        } catch  where error.kind == .notFound || error.kind == .tooLarge {
            // Something that is not an object of these bytes has the name (a larger file, a link, a folder).
            return .conflict
        }
    }

    /// Links `file` under `key`: no byte is copied, and the file's own sync stands for the object's. Across file
    /// systems (or where links are refused) the caller writes the bytes instead.
    public func linkIfAbsent(key: String, file: String) async throws(BucketError) -> PutOutcome? {
        try ObjectKey.check(key)
        let components = key.split(separator: "/")
        let name = String(components.last!)
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        let folder = try openFolder(components.dropLast(), under: rootFolder, creating: true)!
        defer { close(folder) }
        if linkat(AT_FDCWD, file, folder, name, 0) == 0 {
            try syncFolder(folder, path: FolderStore.parent(of: path(of: key)))
            return .created
        }
        switch errno {
        case EXDEV, EPERM, EMLINK, EACCES: return nil
        case EEXIST:
            guard let bytes = try? Data(contentsOf: URL(fileURLWithPath: file)) else { return nil }
            do {
                return try readFile(name, in: folder, key: key, maxBytes: bytes.count) == Array(bytes) ? .alreadyIdentical : .conflict
            } catch  where error.kind == .notFound || error.kind == .tooLarge {
                return .conflict
            }
        default: throw posixError("link \(path(of: key))")
        }
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try ObjectKey.check(key)
        let components = key.split(separator: "/")
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        guard let folder = try openFolder(components.dropLast(), under: rootFolder, creating: false) else {
            throw BucketError(.notFound, "No object at \(path(of: key)).")
        }
        defer { close(folder) }
        return try readFile(String(components.last!), in: folder, key: key, maxBytes: maxBytes)
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try ObjectKey.check(key)
        let components = key.split(separator: "/")
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        guard let folder = try openFolder(components.dropLast(), under: rootFolder, creating: false) else { return nil }
        defer { close(folder) }
        var info = stat()
        guard fstatat(folder, String(components.last!), &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw posixError("stat \(path(of: key))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return nil }
        return ObjectInfo(key: key, size: Int64(info.st_size))
    }

    public func delete(key: String) async throws(BucketError) {
        try ObjectKey.check(key)
        let components = key.split(separator: "/")
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        guard let folder = try openFolder(components.dropLast(), under: rootFolder, creating: false) else { return }
        defer { close(folder) }
        guard unlinkat(folder, String(components.last!), 0) == 0 || errno == ENOENT || errno == ENOTDIR else { throw posixError("delete \(path(of: key))") }
    }

    public func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError)
        -> ListPage
    {
        try ObjectKey.checkPrefix(prefix)
        if let delimiter, delimiter != "/" { throw BucketError(.invalidKey, "A folder bucket lists with the delimiter / only.") }
        // A continuation is the last key of the previous page.
        let after = [startAfter, continuation].compactMap { $0 }.max { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let split = prefix.lastIndex(of: "/")
        let folderKey = split.map { String(prefix[...$0]) } ?? ""
        let namePrefix = split.map { String(prefix[prefix.index(after: $0)...]) } ?? prefix
        let rootFolder = try openRoot()
        defer { close(rootFolder) }
        guard let folder = try openFolder(folderKey.split(separator: "/")[...], under: rootFolder, creating: false) else { return ListPage(objects: []) }
        defer { close(folder) }
        var walk = Walk(root: root, after: after.map { Array($0.utf8) }, limit: max(1, maxKeys), delimited: delimiter != nil)
        try walk.visit(folder, key: folderKey, namePrefix: namePrefix, top: true)
        return ListPage(objects: walk.objects, commonPrefixes: walk.prefixes, continuation: walk.truncated ? walk.lastKey : nil)
    }

    /// A depth-first walk in key order that stops after a page's worth of keys. Entries are looked at without
    /// following links, and only folders and regular files count.
    struct Walk {
        let root: String
        let after: [UInt8]?
        let limit: Int
        let delimited: Bool
        var objects: [ObjectInfo] = []
        var prefixes: [String] = []
        var truncated = false
        var lastKey: String?

        /// Walks the open folder `folder` (not closed here), whose key prefix is `key`.
        mutating func visit(_ folder: Int32, key: String, namePrefix: String, top: Bool) throws(BucketError) {
            // fdopendir takes over the descriptor it is given: a copy, so `folder` stays open to open subfolders.
            guard let directory = fdopendir(dup(folder)) else { throw posixError("open folder \(root)/\(key)") }
            var entries: [(key: [UInt8], name: String, size: Int64?)] = []
            while let entry = readdir(directory) {
                // Only up to the name's NUL: readdir's record is allocated to its name's length, not to the full
                // 256-byte d_name, so copying d_name whole would read past it.
                let name = String(
                    cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                        .assumingMemoryBound(to: CChar.self))
                if name == "." || name == ".." || name.hasPrefix(FolderStore.temporaryPrefix) { continue }
                if top && !name.hasPrefix(namePrefix) { continue }
                var info = stat()
                guard fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                let isFolder = info.st_mode & S_IFMT == S_IFDIR
                guard isFolder || info.st_mode & S_IFMT == S_IFREG else { continue }
                let entryKey = Array((key + name + (isFolder ? "/" : "")).utf8)
                // No key is longer than this: deeper nesting holds no object, and need not hold a descriptor per level.
                guard entryKey.count <= ObjectKey.maxLength else { continue }
                entries.append((entryKey, name, isFolder ? nil : Int64(info.st_size)))
            }
            closedir(directory)
            entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
            for entry in entries {
                if truncated { return }
                let entryKey = String(decoding: entry.key, as: UTF8.self)
                if let size = entry.size {
                    if let after, !after.lexicographicallyPrecedes(entry.key) { continue }
                    guard take(entryKey) else { return }
                    objects.append(ObjectInfo(key: entryKey, size: size))
                    continue
                }
                if let after, !after.starts(with: entry.key), entry.key.lexicographicallyPrecedes(after) { continue }
                if delimited && top {
                    if let after, !after.lexicographicallyPrecedes(entry.key) { continue }
                    guard take(entryKey) else { return }
                    prefixes.append(entryKey)
                    continue
                }
                // Opened without following: a folder replaced by a link since it was listed is skipped.
                let child = openat(folder, entry.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { continue }
                defer { close(child) }
                try visit(child, key: entryKey, namePrefix: "", top: false)
            }
        }

        /// Whether the page has room for `key`; marks the page truncated when not.
        mutating func take(_ key: String) -> Bool {
            if objects.count + prefixes.count == limit {
                truncated = true
                return false
            }
            lastKey = key
            return true
        }
    }

    // MARK: Files

    /// Opens the bucket folder itself.
    /// - Throws: ``BucketError`` `.noSuchBucket` when it does not exist.
    func openRoot() throws(BucketError) -> Int32 {
        let descriptor = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR {
                throw BucketError(
                    .noSuchBucket,
                    "The folder bucket \(root) does not exist. Check the bucket URL, and that the disk or share holding it is mounted.")
            }
            throw posixError("open the bucket folder \(root)")
        }
        return descriptor
    }

    /// Opens the folder `components` below `base`, one level at a time and never through a link; with `creating`, makes
    /// the missing ones. The caller closes the result (and still owns `base`).
    /// - Returns: `nil` when a folder is missing, or is a link or a file, and `creating` is false.
    /// - Throws: ``BucketError`` when `creating` meets a link or a file where a folder should be.
    func openFolder(_ components: ArraySlice<Substring>, under base: Int32, creating: Bool) throws(BucketError) -> Int32? {
        var current = dup(base)
        guard current >= 0 else { throw posixError("open the bucket folder \(root)") }
        var reached = root
        for component in components {
            let name = String(component)
            reached += "/" + name
            var next = openat(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && creating {
                if mkdirat(current, name, 0o755) != 0 && errno != EEXIST {
                    let error = posixError("create folder \(reached)")
                    close(current)
                    throw error
                }
                // The new folder's entry must be durable too, or a crash could lose the file written inside it.
                do throws(BucketError) { try syncFolder(current, path: FolderStore.parent(of: reached)) } catch {
                    close(current)
                    throw error
                }
                next = openat(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let code = errno
            close(current)
            guard next >= 0 else {
                guard code == ENOENT || code == ENOTDIR || code == ELOOP else {
                    errno = code
                    throw posixError("open folder \(reached)")
                }
                if creating {
                    throw BucketError(.invalidKey, "Refused to write into \(reached): it is a link or a file, and a folder bucket never writes through links.")
                }
                return nil
            }
            current = next
        }
        return current
    }

    func syncFolder(_ folder: Int32, path: String) throws(BucketError) {
        guard fsync(folder) == 0 || errno == EINVAL else { throw posixError("fsync folder \(path)") }
    }

    func writeAll(_ descriptor: Int32, _ bytes: [UInt8], path: String) throws(BucketError) {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                throw posixError("write \(path)")
            }
            written += result
        }
    }

    /// Reads the regular file `name` of the open `folder`: never through a link, and never waiting on a FIFO or a device.
    func readFile(_ name: String, in folder: Int32, key: String, maxBytes: Int) throws(BucketError) -> [UInt8] {
        let path = path(of: key)
        let descriptor = openat(folder, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR || errno == ELOOP { throw BucketError(.notFound, "No object at \(path).") }
            throw posixError("open \(path)")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw posixError("stat \(path)") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw BucketError(.notFound, "No object at \(path).") }
        if info.st_size > maxBytes { throw BucketError(.tooLarge, "The object \(path) holds \(info.st_size) bytes, over the limit of \(maxBytes).") }
        // The file may grow while we read; never read more than the limit.
        var bytes = [UInt8](repeating: 0, count: min(Int(info.st_size), maxBytes) + 1)
        var filled = 0
        while filled < bytes.count {
            let result = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + filled, $0.count - filled) }
            if result < 0 {
                if errno == EINTR { continue }
                throw posixError("read \(path)")
            }
            if result == 0 { break }
            filled += result
        }
        if filled > maxBytes { throw BucketError(.tooLarge, "The object \(path) holds more than \(maxBytes) bytes.") }
        return Array(bytes[..<filled])
    }
}

func posixError(_ action: String) -> BucketError {
    let code = errno
    let kind: BucketError.Kind = code == EACCES || code == EPERM || code == EROFS ? .accessDenied : .io
    return BucketError(kind, "Cannot \(action): \(String(cString: strerror(code))).")
}
