#if canImport(Glibc)
    import Dispatch
    import Glibc

    extension FolderStore {
        /// The most folders one ``changes(under:)`` watches (1,024): a bucket that someone filled with more folders is
        /// no longer watched, and the reader polls.
        public static let maxWatchedFolders = 1_024

        /// Notices from Linux inotify that objects under `prefix` may have changed.
        ///
        /// It watches the folder `prefix` names, the folders in it, and in each of those the 16 whose names sort last
        /// (a room's logs/ and hints/, and the newest date folders of logs/) and every folder made while it watches.
        /// An older date folder needs no watch: a log file written into it more than 30 s late comes with a hint in
        /// hints/ (docs/PROTOCOL.md §13.3). A file written in one of them (closed after writing, renamed or linked into
        /// it) is a notice. While a folder of the prefix does not exist, its parent is watched for it; while the bucket
        /// folder does not, it is looked for every second. Like every folder store operation it opens folders relative
        /// to their parent without following links, and watches the folder it opened, never a path.
        /// - Returns: `nil` when the prefix is not a folder's (empty or ending in `/`) or inotify cannot be had (too
        ///   many instances, no /proc); the stream finishes when more than ``maxWatchedFolders`` folders would be watched or the
        ///   system's limit of watches is reached.
        public func changes(under prefix: String) -> AsyncStream<Void>? {
            FolderWatch(store: self, prefix: prefix)?.notices
        }
    }

    /// One prefix of a folder bucket watched with inotify, for ``FolderStore/changes(under:)``.
    ///
    /// Every mutable field is used only on `queue`, whose read source reads the inotify descriptor when it has events:
    /// no thread of the cooperative pool ever waits on it. The watch stops, and the descriptor is closed, when the
    /// stream's consumer goes away.
    final class FolderWatch: @unchecked Sendable {
        /// Folders below the prefix folder that are watched: its own folders, and theirs.
        static let depth = 2
        /// Of the folders at ``depth`` that exist when watching starts, how many are watched (those whose names sort last).
        static let existingDeepFolders = 16

        let store: FolderStore
        /// The prefix's folders, from the bucket folder down.
        let prefix: [String]
        let limit: Int
        let notices: AsyncStream<Void>
        private let continuation: AsyncStream<Void>.Continuation
        private let inotify: Int32
        private let queue = DispatchQueue(label: "parley.folder-watch")
        private var source: DispatchSourceRead?
        private var retry: DispatchSourceTimer?
        /// Each watch and the folders of the path it was added for, from the bucket folder down.
        private var watches: [Int32: [String]] = [:]
        private var stopped = false

        /// Only folders (`IN_ONLYDIR`): a link or a file swapped in for the folder opened is never watched.
        private static let ancestorMask = UInt32(IN_CREATE | IN_MOVED_TO | IN_MOVE_SELF | IN_ONLYDIR)
        private static let folderMask = UInt32(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

        init?(store: FolderStore, prefix: String, limit: Int = FolderStore.maxWatchedFolders) {
            guard prefix.isEmpty || (prefix.hasSuffix("/") && ObjectKey.problem(with: String(prefix.dropLast())) == nil) else { return nil }
            // Folders are watched through their descriptors' names there (see addWatch): without it, nothing could be.
            guard access("/proc/self/fd", F_OK) == 0 else { return nil }
            let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            guard descriptor >= 0 else { return nil }
            self.store = store
            self.prefix = prefix.split(separator: "/").map(String.init)
            self.limit = limit
            inotify = descriptor
            // One notice waiting is as good as many: a burst of changes wakes the reader once.
            (notices, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: queue)
            source.setEventHandler { [self] in readEvents() }
            source.setCancelHandler { close(descriptor) }
            self.source = source
            continuation.onTermination = { [self] _ in queue.async { self.stop() } }
            queue.async { [self] in
                guard !stopped else { return }
                self.source?.activate()
                establish(noticing: true)
            }
        }

        /// The keys of the folders watched now ("" is the bucket folder), for tests.
        func watchedKeys() async -> Set<String> {
            await withCheckedContinuation { continuation in
                queue.async { continuation.resume(returning: Set(self.watches.values.map { $0.map { "\($0)/" }.joined() })) }
            }
        }

        private func stop() {
            guard !stopped else { return }
            stopped = true
            retry?.cancel()
            // Its cancel handler closes the descriptor, after any event handler still running.
            source?.activate()
            source?.cancel()
            source = nil
            watches = [:]
        }

        /// Stops watching for good: the reader polls from now on.
        private func giveUp() {
            stop()
            continuation.finish()
        }

        /// Watches the path to the prefix folder, and the folders below it, afresh, and drops the watches of folders no
        /// longer there.
        /// - Parameter noticing: whether to notice in any case (objects may have arrived while nothing watched them);
        ///   else only when a watched folder holds a file.
        private func establish(noticing: Bool) {
            guard !stopped else { return }
            retry?.cancel()
            retry = nil
            var seen: Set<Int32> = []
            var reachedBucket = false
            var holdsFile = false
            defer {
                if !stopped {
                    for (watch, _) in watches where !seen.contains(watch) {
                        inotify_rm_watch(inotify, watch)
                        watches[watch] = nil
                    }
                    if reachedBucket && (noticing || holdsFile) { continuation.yield() }
                }
            }
            guard var current = try? store.openRoot() else {
                // The bucket folder itself is missing (an unmounted disk): nothing inside the bucket can tell when it
                // is back.
                let timer = DispatchSource.makeTimerSource(queue: queue)
                timer.schedule(deadline: .now() + 1)
                timer.setEventHandler { [self] in establish(noticing: true) }
                timer.activate()
                retry = timer
                return
            }
            reachedBucket = true
            var path: [String] = []
            while true {
                guard let watch = addWatch(current, path: path) else {
                    close(current)
                    return
                }
                seen.insert(watch)
                if path.count == prefix.count { break }
                let next = openat(current, prefix[path.count], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                close(current)
                // Not there yet (or a link, or a file): the watch on its parent tells when a folder of that name appears.
                guard next >= 0 else { return }
                path.append(prefix[path.count])
                current = next
            }
            defer { close(current) }
            let held = Set(watches.values)
            holdsFile = watchFolders(in: current, path: path, seen: &seen, keeping: held, lookingForFiles: !noticing)
        }

        /// Watches the folders in the open folder `folder` at `path`, and theirs down to ``depth`` below the prefix; at
        /// the deepest level only the newest that exist, and those in `keeping`.
        /// - Returns: whether `folder` or a folder watched below it holds a file (if `lookingForFiles`: the deepest
        ///   folders are read only for that).
        private func watchFolders(in folder: Int32, path: [String], seen: inout Set<Int32>, keeping: Set<[String]>, lookingForFiles: Bool = true) -> Bool {
            let level = path.count - prefix.count + 1
            let (names, holdsFile) = entries(of: folder)
            var found = holdsFile
            let chosen = level < Self.depth ? names : Array(names.sorted().suffix(Self.existingDeepFolders)) + names.filter { keeping.contains(path + [$0]) }
            for name in Set(chosen) {
                guard !stopped else { return found }
                let child = openat(folder, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { continue }
                defer { close(child) }
                guard let watch = addWatch(child, path: path + [name]) else { continue }
                seen.insert(watch)
                guard seen.count <= limit else {
                    giveUp()
                    return found
                }
                if level < Self.depth {
                    if watchFolders(in: child, path: path + [name], seen: &seen, keeping: keeping, lookingForFiles: lookingForFiles) { found = true }
                } else if lookingForFiles && entries(of: child).holdsFile {
                    found = true
                }
            }
            return found
        }

        /// Watches the open folder `folder`, reached by `path`, through its descriptor: a link put in place of a folder of
        /// the path since it was opened is not followed.
        /// - Returns: the watch, or `nil` when it could not be added: the folder is open, so that is the system's limit
        ///   of watches or memory, and watching gives up.
        private func addWatch(_ folder: Int32, path: [String]) -> Int32? {
            let mask = path.count < prefix.count ? Self.ancestorMask : Self.folderMask
            let watch = inotify_add_watch(inotify, "/proc/self/fd/\(folder)", mask)
            guard watch >= 0 else {
                giveUp()
                return nil
            }
            watches[watch] = path
            return watch
        }

        /// The folders and whether there is a regular file in the open `folder` (temporary files of writes in progress
        /// do not count), never following links.
        private func entries(of folder: Int32) -> (folders: [String], holdsFile: Bool) {
            // fdopendir takes over the descriptor it is given: a copy, so `folder` stays open.
            guard let directory = fdopendir(dup(folder)) else { return ([], false) }
            defer { closedir(directory) }
            var folders: [String] = []
            var holdsFile = false
            while let entry = readdir(directory) {
                let name = String(
                    cString: UnsafeRawPointer(entry).advanced(by: MemoryLayout<dirent>.offset(of: \dirent.d_name)!).assumingMemoryBound(to: CChar.self))
                if name == "." || name == ".." || name.hasPrefix(FolderStore.temporaryPrefix) { continue }
                var type = Int32(entry.pointee.d_type)
                if type == Int32(DT_UNKNOWN) {
                    var info = stat()
                    guard fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                    type = info.st_mode & S_IFMT == S_IFDIR ? Int32(DT_DIR) : info.st_mode & S_IFMT == S_IFREG ? Int32(DT_REG) : Int32(DT_UNKNOWN)
                }
                if type == Int32(DT_DIR) { folders.append(name) } else if type == Int32(DT_REG) { holdsFile = true }
            }
            return (folders, holdsFile)
        }

        /// Reads what inotify has (a bounded amount per call: the source calls again while more waits) and notices
        /// once for it all.
        private func readEvents() {
            guard !stopped else { return }
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            var changed = false
            var rescan = false
            var overflowed = false
            for _ in 0..<16 {
                let count = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { break }
                var offset = 0
                // struct inotify_event: wd, mask, cookie, len, then a name of len bytes padded with NULs.
                while offset + 16 <= count, !stopped {
                    let (watch, mask, length) = buffer.withUnsafeBytes {
                        (
                            $0.loadUnaligned(fromByteOffset: offset, as: Int32.self), $0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self),
                            Int($0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                        )
                    }
                    let nameBytes = buffer[(offset + 16)..<min(count, offset + 16 + length)]
                    let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                    offset += 16 + length
                    if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                        // Events were lost: which folders came and went, and which files, is not known.
                        overflowed = true
                        continue
                    }
                    handle(watch: watch, mask: mask, name: name, changed: &changed, rescan: &rescan)
                }
            }
            if stopped { return }
            if rescan || overflowed {
                establish(noticing: changed || overflowed)
            } else if changed {
                continuation.yield()
            }
        }

        private func handle(watch: Int32, mask: UInt32, name: String, changed: inout Bool, rescan: inout Bool) {
            guard let path = watches[watch] else { return }
            if mask & UInt32(IN_IGNORED) != 0 {
                // The folder was deleted (or its file system unmounted); on the path to the prefix, it may come back.
                watches[watch] = nil
                if path.count <= prefix.count { rescan = true }
                return
            }
            if mask & UInt32(IN_MOVE_SELF) != 0 {
                // A watched folder moved: every path recorded below it is wrong now.
                rescan = true
                return
            }
            let isFolder = mask & UInt32(IN_ISDIR) != 0
            if path.count < prefix.count {
                if isFolder && name == prefix[path.count] { rescan = true }
                return
            }
            guard isFolder else {
                if !name.hasPrefix(FolderStore.temporaryPrefix) { changed = true }
                return
            }
            guard path.count - prefix.count < FolderWatch.depth, !name.isEmpty else { return }
            // A new folder: watched from now on, and noticed if a file reached it before its watch did.
            guard let root = try? store.openRoot() else { return }
            defer { close(root) }
            guard let parent = try? store.openFolder(path[...].map { Substring($0) }[...], under: root, creating: false) else { return }
            defer { close(parent) }
            let child = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { return }
            defer { close(child) }
            guard addWatch(child, path: path + [name]) != nil else { return }
            guard watches.count <= limit else { return giveUp() }
            if path.count - prefix.count + 1 < FolderWatch.depth {
                var seen = Set(watches.keys)
                if watchFolders(in: child, path: path + [name], seen: &seen, keeping: []) { changed = true }
            } else if entries(of: child).holdsFile {
                changed = true
            }
        }
    }
#else
    extension FolderStore {
        /// Folder buckets are watched on Linux only (inotify); elsewhere readers poll.
        public func changes(under prefix: String) -> AsyncStream<Void>? { nil }
    }
#endif
