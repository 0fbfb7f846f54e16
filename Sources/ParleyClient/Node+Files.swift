import Crypto
import Foundation
import ParleyCore
import ParleyStore
import ParleySync

/// Where a node fetches blocks it does not hold: a room's bucket, relay or peers.
public protocol BlockSource: Sendable {
    /// The stored bytes of block `block`; the caller checks them.
    /// - Throws: the transport's error; ``ClientError`` `.notFound` when the source does not have the block.
    func fetch(_ block: BlockRef) async throws -> [UInt8]
}

/// What ``Node/download(_:from:to:progress:)`` did.
public struct DownloadReport: Sendable {
    /// Where the file was written.
    public var path: String
    public var bytes: Int64
    /// Blocks fetched from the source; the others were held here already.
    public var blocksFetched = 0
    public var blocksHeld = 0
}

extension Node {
    /// The largest file this node shares: files beyond it are refused before anything is sealed.
    public static let maxFileBytes: Int64 = 4 << 30
    /// How much of a file is read at a time while sealing it.
    static let readChunkBytes = 1 << 20

    /// Shares the file at `path` in `roomID` (docs/PROTOCOL.md §16): seals it into blocks under a new key, stores the
    /// blocks here (synced to disk before the message: they are what it promises), then publishes a message of msgtype `file`
    /// carrying the reference, the name, media type, size, SHA-256 and, for an image, its dimensions. A file this
    /// device shared before (the same bytes) takes its earlier blocks again: they are stored and moved once.
    ///
    /// The transports send the blocks before the message, at the room's next flush.
    /// - Parameters:
    ///   - name: the name to share it under (made safe, ``FileAttachment/safeName(_:)``); the path's last component when `nil`.
    ///   - caption: the message's text; the file's name when `nil`.
    ///   - progress: told the bytes sealed so far and the total, from this thread.
    /// - Throws: ``ClientError``: `.invalidArgument` for a path that is no readable regular file, `.tooLarge` beyond
    ///   ``maxFileBytes``; the store's failures (a full disk).
    @discardableResult
    public func shareFile(
        _ roomID: String, path: String, name: String? = nil, caption: String? = nil, replyTo: String? = nil, priority: MessagePriority = .normal,
        progress: (Int64, Int64) -> Void = { _, _ in }
    ) throws -> VerifiedEvent {
        _ = try requireState(roomID)
        if let replyTo {
            if let problem = EventID.problem(with: replyTo, roomID: roomID) { throw ClientError(.invalidArgument, "Invalid --reply-to: \(problem).") }
            guard try store.event(eventID: replyTo) != nil else { throw ClientError(.unknownEvent, "This node does not hold event \(replyTo).") }
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ClientError(.invalidArgument, "Cannot open \(path): \(String(cString: strerror(errno))).", remedy: "Give the path of a file you can read.")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            throw ClientError(
                .invalidArgument, "\(path) is not a regular file.", remedy: "Give the path of a file; to share a folder, archive it first (tar, zip).")
        }
        let size = Int64(status.st_size)
        guard size <= Node.maxFileBytes else {
            throw ClientError(
                .tooLarge, "\(path) is \(size) bytes; a file shared in Parley is at most \(Node.maxFileBytes >> 30) GiB.",
                remedy: "Split it first (for example with split -b 4G) and share the parts.")
        }
        let name = FileAttachment.safeName(name ?? (path as NSString).lastPathComponent)
        let whitened = try store.whitensFiles(roomID: roomID)
        let sealed = try seal(descriptor: descriptor, size: size, path: path, whitened: whitened, progress: progress)
        let reference: FileReference
        if let earlier = try store.sentFile(sha256: sealed.sha256, size: size), earlier.layout.whitened == whitened, blocksHeld(earlier) {
            // The same bytes shared before: their blocks serve again, and the new ones (another key) go.
            for id in sealed.blocks where id != earlier.root { blocks.remove(id) }
            reference = earlier
        } else {
            try store.recordSentFile(sha256: sealed.sha256, sealed.reference)
            reference = sealed.reference
        }
        let dimensions = FileKind.imageDimensions(header: sealed.header)
        let attachment = FileAttachment(
            reference: reference, name: name, mediaType: FileKind.mediaType(header: sealed.header, name: name), sha256: sealed.sha256,
            width: dimensions?.width, height: dimensions?.height)
        var content = JSONObject(["msgtype": .string(MessageKind.file.rawValue), "body": .string(caption ?? name)])
        content["file"] = .object(attachment.jsonObject)
        if priority != .normal { content["priority"] = .string(priority.rawValue) }
        return try publish(roomID: roomID, type: EventType.message, content: content, parentEventID: replyTo)
    }

    /// Reads the file from `descriptor` and seals it into this node's blocks, hashing it on the way.
    func seal(descriptor: Int32, size: Int64, path: String, whitened: Bool = false, progress: (Int64, Int64) -> Void) throws -> (
        reference: FileReference, sha256: [UInt8], header: [UInt8], blocks: [BlockID]
    ) {
        var random = SystemRandomNumberGenerator()
        let whitening = whitened ? FileKey.random(using: &random) : nil
        var sealer = try blockCall { () throws(BlockError) in try FileSealer(size: size, key: FileKey.random(using: &random), whitening: whitening) }
        var hash = SHA256()
        var header: [UInt8] = []
        var written: [BlockID] = []
        var buffer = [UInt8](repeating: 0, count: Node.readChunkBytes)
        var done: Int64 = 0
        progress(0, size)
        while done < size {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw ClientError(.io, "Cannot read \(path): \(String(cString: strerror(errno))).") }
            guard count > 0 else { break }
            let chunk = buffer[..<min(count, Int(size - done))]
            hash.update(data: chunk)
            if header.count < FileKind.headerBytes { header += chunk.prefix(FileKind.headerBytes - header.count) }
            for block in try blockCall({ () throws(BlockError) in try sealer.append(chunk) }) {
                try blocks.write(block, durable: false)
                written.append(block.id)
            }
            done += Int64(chunk.count)
            progress(done, size)
        }
        guard done == size else {
            throw ClientError(
                .io, "\(path) changed while it was read: it ended at \(done) of \(size) bytes.", remedy: "Share it again once nothing writes to it.")
        }
        let (last, reference) = try blockCall { () throws(BlockError) in try sealer.finish() }
        for block in last {
            try blocks.write(block, durable: false)
            written.append(block.id)
        }
        try blocks.sync(written)
        return (reference, Array(hash.finalize()), header, written)
    }

    /// Whether this node holds every block of a file (manifests read from here).
    func blocksHeld(_ reference: FileReference) -> Bool {
        guard let (all, missing) = try? localBlocks(of: reference) else { return false }
        return missing == 0 && all.allSatisfy { blocks.contains($0.id) }
    }

    /// Turns whitening (docs/PROTOCOL.md §16.7) on or off for the files this node shares in `roomID`.
    public func setWhitensFiles(_ roomID: String, _ whitens: Bool) throws {
        _ = try requireState(roomID)
        try store.setWhitensFiles(roomID: roomID, whitens)
    }

    /// Whether this node shares files in `roomID` whitened.
    public func whitensFiles(_ roomID: String) throws -> Bool {
        _ = try requireState(roomID)
        return try store.whitensFiles(roomID: roomID)
    }

    /// After a file message's redaction, takes its blocks back: each transport of the room is told to delete them
    /// there (at its next run) unless another message of the room still shares the file, and this node drops its own
    /// copies unless a message of any room does. Blocks are listed from the manifests this node holds: a node that
    /// never fetched the file lists its root alone, without which the rest cannot be read.
    func takeBack(_ file: FileAttachment, roomID: String) throws {
        let root = file.reference.root
        let (listed, _) = try localBlocks(of: file.reference)
        if try !store.sharesFile(root: root, roomID: roomID) {
            for transport in [TransportName.bucket, .relay] where try store.transportRoom(transport, roomID: roomID) != nil {
                try store.queueBlockDeletions(transport, roomID: roomID, blocks: listed, nowMs: clock())
            }
        }
        if try !store.sharesFile(root: root, roomID: nil) {
            for block in listed { blocks.remove(block.id) }
        }
    }

    /// Every block of a file as this node can list it from the blocks it holds, manifests level by level then data;
    /// and how many it cannot list or does not hold.
    func localBlocks(of reference: FileReference) throws -> (blocks: [BlockRef], missing: Int) {
        let reader = FileReader(reference)
        var result: [BlockRef] = []
        var missing = 0
        var level = [reader.root]
        while let first = level.first, first.place.depth > 0 {
            var next: [FileReader.Fetch] = []
            for fetch in level {
                result.append(BlockRef(id: fetch.id, tier: fetch.tier))
                guard let bytes = try blocks.read(fetch.id), let children = try? reader.manifest(bytes, fetched: fetch) else {
                    missing += 1
                    continue
                }
                next += children
            }
            level = next
        }
        for fetch in level {
            for part in [fetch] + [fetch.randomizerFetch].compactMap({ $0 }) {
                result.append(BlockRef(id: part.id, tier: part.tier))
                if !blocks.contains(part.id) { missing += 1 }
            }
        }
        return (result, missing)
    }

    /// The file a message shares.
    /// - Throws: ``ClientError`` `.unknownEvent` when the node does not hold the event, `.invalidArgument` when it
    ///   shares no file (or was deleted).
    public func fileAttachment(eventID: String) throws -> FileAttachment {
        guard let item = try store.item(eventID: eventID) else {
            throw ClientError(.unknownEvent, "This node holds no event \(eventID).", remedy: "`parley log ROOM` lists the messages it holds.")
        }
        guard let file = item.file else {
            let what = item.redacted ? "was deleted" : item.undecryptable ? "cannot be opened yet (no key)" : "shares no file"
            throw ClientError(.invalidArgument, "Message \(eventID) \(what).", remedy: "`parley log ROOM` marks the messages that share files.")
        }
        return file
    }

    /// Fetches and opens the file `attachment` describes and writes it to `path` (created, never replaced): blocks this
    /// node holds are read here, the others fetched from `source` several at a time and kept, so a download that was
    /// cut takes up where it stopped. Every block is checked against the reference before it is used, and the whole
    /// file against its SHA-256 before it is named `path`; until then it is `path.part`, removed on failure.
    /// - Parameter progress: told the file bytes done and the total.
    /// - Throws: ``ClientError``: `.incomplete` when a block cannot be fetched or is not what the reference says (the
    ///   file is not written), `.alreadyExists` for an existing `path`, `.io` (a full disk).
    @discardableResult
    public func download(
        _ attachment: FileAttachment, from source: (any BlockSource)?, to path: String, progress: @escaping @Sendable (Int64, Int64) -> Void = { _, _ in }
    ) async throws -> DownloadReport {
        let partPath = path + ".part"
        guard access(path, F_OK) != 0 else {
            throw ClientError(.alreadyExists, "\(path) exists already.", remedy: "Give another path with -o, or move that file away.")
        }
        let descriptor = open(partPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw ClientError(.io, "Cannot create \(partPath): \(String(cString: strerror(errno))).", remedy: "Check that its folder exists and is writable.")
        }
        var finished = false
        defer {
            close(descriptor)
            if !finished { unlink(partPath) }
        }
        var report = DownloadReport(path: path, bytes: attachment.size)
        let reader = FileReader(attachment.reference)
        let fetcher = BlockFetcher(node: self, source: source)
        let level = try await dataFetches(reader, fetcher: fetcher, counting: &report)
        progress(0, attachment.size)
        var hash = SHA256()
        var offset: Int64 = 0
        let window = BlockTransfer.concurrency(for: reader.layout.dataTier)
        try await withThrowingTaskGroup(of: (Int, [UInt8], DownloadReport).self) { group in
            var started = 0
            var ready: [Int: [UInt8]] = [:]
            var nextToWrite = 0
            func start() {
                let index = started
                let fetch = level[index]
                group.addTask {
                    var counts = DownloadReport(path: "", bytes: 0)
                    let stored = try await fetcher.fetch(fetch, counting: &counts)
                    var randomizer: [UInt8]?
                    if let half = fetch.randomizerFetch { randomizer = try await fetcher.fetch(half, counting: &counts) }
                    let data = try incomplete { () throws(BlockError) in try reader.data(stored, randomizer: randomizer, fetched: fetch) }
                    return (index, Array(data), counts)
                }
                started += 1
            }
            while started < min(window, level.count) { start() }
            while let (index, data, counts) = try await group.next() {
                report.blocksFetched += counts.blocksFetched
                report.blocksHeld += counts.blocksHeld
                ready[index] = data
                while let data = ready.removeValue(forKey: nextToWrite) {
                    hash.update(data: data)
                    try writeAll(descriptor, data, at: offset, path: partPath)
                    offset += Int64(data.count)
                    nextToWrite += 1
                    progress(offset, attachment.size)
                    if started < level.count { start() }
                }
            }
        }
        guard Array(hash.finalize()) == attachment.sha256 else {
            throw ClientError(
                .incomplete, "The file's blocks open, but its bytes do not have the SHA-256 its message gives: the sender described another file.",
                remedy: "Ask the sender to share it again.")
        }
        guard fsync(descriptor) == 0 else { throw ClientError(.io, "Cannot sync \(partPath): \(String(cString: strerror(errno))).") }
        // link, not rename: a file that appeared at `path` meanwhile is never replaced.
        guard link(partPath, path) == 0 else {
            if errno == EEXIST { throw ClientError(.alreadyExists, "\(path) appeared while the file was downloaded.", remedy: "Give another path with -o.") }
            throw ClientError(.io, "Cannot name the file \(path): \(String(cString: strerror(errno))).")
        }
        finished = true
        unlink(partPath)
        return report
    }

    /// Fetches the blocks of a file that this node does not hold from `source` and keeps them, without writing the
    /// file: a file shared in a peer room is then here when its sender is not. Each block is kept only once it hashes
    /// to its id.
    /// - Returns: how many blocks were fetched.
    /// - Throws: ``ClientError`` `.incomplete` when a block cannot be fetched or a manifest does not open.
    @discardableResult
    public func fetchBlocks(of attachment: FileAttachment, from source: any BlockSource) async throws -> Int {
        let reader = FileReader(attachment.reference)
        let fetcher = BlockFetcher(node: self, source: source)
        var report = DownloadReport(path: "", bytes: 0)
        for fetch in try await dataFetches(reader, fetcher: fetcher, counting: &report) {
            for part in [fetch] + [fetch.randomizerFetch].compactMap({ $0 }) { _ = try await fetcher.fetch(part, counting: &report) }
        }
        return report.blocksFetched
    }

    /// The fetches of a file's data blocks, in file order: its manifests fetched first, level by level (few: one per
    /// 1,024 blocks).
    func dataFetches(_ reader: FileReader, fetcher: BlockFetcher, counting report: inout DownloadReport) async throws -> [FileReader.Fetch] {
        var level = [reader.root]
        while let first = level.first, first.place.depth > 0 {
            var next: [FileReader.Fetch] = []
            for fetch in level {
                let stored = try await fetcher.fetch(fetch, counting: &report)
                next += try incomplete { () throws(BlockError) in try reader.manifest(stored, fetched: fetch) }
            }
            level = next
        }
        return level
    }

    func writeAll(_ descriptor: Int32, _ bytes: [UInt8], at offset: Int64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset) + off_t(done)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                if errno == ENOSPC || errno == EDQUOT {
                    throw ClientError(
                        .io, "The disk is full: \(path) could not be written past \(offset + Int64(done)) bytes.",
                        remedy: "Free some space (or give -o on another disk), then download again: the blocks fetched so far are kept.")
                }
                throw ClientError(.io, "Cannot write \(path): \(String(cString: strerror(errno))).")
            }
            done += count
        }
    }
}

/// Gets a file's blocks for a download: from the node's own blocks, else from the source, keeping what it fetched.
struct BlockFetcher: Sendable {
    let node: Node
    let source: (any BlockSource)?

    func fetch(_ fetch: FileReader.Fetch, counting report: inout DownloadReport) async throws -> [UInt8] {
        let reference = BlockRef(id: fetch.id, tier: fetch.tier)
        if let held = try node.blocks.read(fetch.id) {
            report.blocksHeld += 1
            return held
        }
        guard let source else {
            throw ClientError(
                .incomplete, "Block \(fetch.id.hex.prefix(16))… of the file is not here, and the room has no transport to fetch it from.",
                remedy: "Join the room through its bucket or relay, then download again.")
        }
        let stored: [UInt8]
        do {
            stored = try await source.fetch(reference)
        } catch let error as ClientError where error.code == .notFound {
            throw ClientError(
                .incomplete, "The file is incomplete: block \(fetch.id.hex.prefix(16))… is not where the room keeps blocks (\(error.message)).",
                remedy: "The sender's device may not have sent it yet; try again later. The blocks fetched so far are kept.")
        }
        // Checked by the reader before use; kept only once it hashes to its id.
        if stored.count == fetch.tier.byteCount, BlockID.of(stored) == fetch.id {
            try node.blocks.write(SealedBlock(id: fetch.id, bytes: stored), durable: false)
        }
        report.blocksFetched += 1
        return stored
    }
}

/// Runs block checks, turning a refusal into the error a download reports: the file is incomplete.
func incomplete<T>(_ body: () throws(BlockError) -> T) throws(ClientError) -> T {
    do { return try body() } catch {
        throw ClientError(
            .incomplete, "The file is incomplete: \(error.message) (\(error.code.rawValue)).",
            remedy: "Where the room keeps blocks holds something else under that name; the sender can share the file again.")
    }
}

func blockCall<T>(_ body: () throws(BlockError) -> T) throws(ClientError) -> T {
    do { return try body() } catch { throw ClientError(.invalidArgument, "\(error.message) (\(error.code.rawValue)).") }
}
