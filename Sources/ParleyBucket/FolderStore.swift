import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A folder used as a bucket (`file:///path`): local, NFS, or kept in sync by Dropbox or Syncthing.
///
/// Writes are create-only, atomic and durable: the bytes go to a temporary file in the target folder, which is
/// fsynced, then hard-linked to its name (which fails if the name exists, so nothing is ever replaced), and the
/// folder is fsynced. A reader never sees a partial object.
public struct FolderStore: ObjectStore {
    public let root: String

    /// Temporary files start with this; listings skip them.
    static let temporaryPrefix = ".parley-tmp-"

    public init(root: String) {
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    public var location: String { "file://\(root)" }

    func path(of key: String) -> String { "\(root)/\(key)" }

    public func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try ObjectKey.check(key)
        let target = path(of: key)
        let folder = String(target[..<target.lastIndex(of: "/")!])
        try makeFolders(folder)
        let temporary = "\(folder)/\(FolderStore.temporaryPrefix)\(UInt64.random(in: 0...UInt64.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw posixError("create \(temporary)") }
        defer { unlink(temporary) }
        do {
            defer { close(descriptor) }
            try writeAll(descriptor, bytes, path: temporary)
            guard fsync(descriptor) == 0 else { throw posixError("fsync \(temporary)") }
        }
        if link(temporary, target) == 0 {
            try syncFolder(folder)
            return .created
        }
        guard errno == EEXIST else { throw posixError("link \(target)") }
        let existing = try readFile(target, maxBytes: bytes.count)
        return existing == bytes ? .alreadyIdentical : .conflict
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try ObjectKey.check(key)
        return try readFile(path(of: key), maxBytes: maxBytes)
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try ObjectKey.check(key)
        var info = stat()
        guard stat(path(of: key), &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw posixError("stat \(path(of: key))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return nil }
        return ObjectInfo(key: key, size: Int64(info.st_size))
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
        var walk = Walk(after: after.map { Array($0.utf8) }, limit: max(1, maxKeys), delimited: delimiter != nil)
        try walk.visit(folder: root + "/" + folderKey, key: folderKey, namePrefix: namePrefix, top: true)
        return ListPage(objects: walk.objects, commonPrefixes: walk.prefixes, continuation: walk.truncated ? walk.lastKey : nil)
    }

    /// A depth-first walk in key order that stops after a page's worth of keys.
    struct Walk {
        let after: [UInt8]?
        let limit: Int
        let delimited: Bool
        var objects: [ObjectInfo] = []
        var prefixes: [String] = []
        var truncated = false
        var lastKey: String?

        mutating func visit(folder: String, key: String, namePrefix: String, top: Bool) throws(BucketError) {
            guard let directory = opendir(folder) else {
                if errno == ENOENT || errno == ENOTDIR { return }
                throw posixError("open folder \(folder)")
            }
            var entries: [(key: [UInt8], name: String, isFolder: Bool)] = []
            while let entry = readdir(directory) {
                // Only up to the name's NUL: readdir's record is allocated to its name's length, not to the full
                // 256-byte d_name, so copying d_name whole would read past it.
                let name = String(
                    cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
                        .assumingMemoryBound(to: CChar.self))
                if name == "." || name == ".." || name.hasPrefix(FolderStore.temporaryPrefix) { continue }
                if top && !name.hasPrefix(namePrefix) { continue }
                var info = stat()
                guard stat(folder + "/" + name, &info) == 0 else { continue }
                let isFolder = info.st_mode & S_IFMT == S_IFDIR
                guard isFolder || info.st_mode & S_IFMT == S_IFREG else { continue }
                entries.append((Array((key + name + (isFolder ? "/" : "")).utf8), name, isFolder))
            }
            closedir(directory)
            entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
            for entry in entries {
                if truncated { return }
                let entryKey = String(decoding: entry.key, as: UTF8.self)
                if entry.isFolder {
                    if let after, !after.starts(with: entry.key), entry.key.lexicographicallyPrecedes(after) { continue }
                    if delimited && top {
                        if let after, !after.lexicographicallyPrecedes(entry.key) { continue }
                        guard take(entryKey) else { return }
                        prefixes.append(entryKey)
                    } else {
                        try visit(folder: folder + "/" + entry.name, key: entryKey, namePrefix: "", top: false)
                    }
                } else {
                    if let after, !after.lexicographicallyPrecedes(entry.key) { continue }
                    var info = stat()
                    guard stat(folder + "/" + entry.name, &info) == 0 else { continue }
                    guard take(entryKey) else { return }
                    objects.append(ObjectInfo(key: entryKey, size: Int64(info.st_size)))
                }
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

    func makeFolders(_ folder: String) throws(BucketError) {
        var missing: [String] = []
        var current = folder
        // The bucket folder itself is created too, like `mkdir -p`.
        while !current.isEmpty, access(current, F_OK) != 0 {
            missing.append(current)
            guard let slash = current.lastIndex(of: "/") else { break }
            current = String(current[..<slash])
        }
        for created in missing.reversed() {
            if mkdir(created, 0o755) != 0 && errno != EEXIST { throw posixError("create folder \(created)") }
            // The new folder's entry must be durable too, or a crash could lose the file inside it.
            try syncFolder(String(created[..<created.lastIndex(of: "/")!]))
        }
    }

    func syncFolder(_ folder: String) throws(BucketError) {
        let descriptor = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw posixError("open folder \(folder)") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 || errno == EINVAL else { throw posixError("fsync folder \(folder)") }
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

    func readFile(_ path: String, maxBytes: Int) throws(BucketError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { throw BucketError(.notFound, "No object at \(path).") }
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
