import CZlib
import Crypto
import ParleyCore
import ParleySync

/// An archive part's body (docs/PROTOCOL.md §13.9.2) as stored, checked against its verified manifest: checks 12–16
/// of §13.9.4, then its lines.
public enum ArchiveBody {
    /// Checks 12 and 13 on the listing, before anything is downloaded: a body is listed, at the manifest's size.
    /// - Throws: ``ArchiveError`` `bodyMissing` or `bodySizeMismatch`.
    public static func checkListed(_ body: ObjectInfo?, manifest: ArchiveManifest) throws(ArchiveError) {
        guard let body else { throw ArchiveError(.bodyMissing, "no body \(manifest.body.key) is listed") }
        guard body.size == manifest.body.size else {
            throw ArchiveError(.bodySizeMismatch, "the body is listed at \(body.size) bytes, the manifest says \(manifest.body.size)")
        }
    }

    /// Checks 13–16 on the stored bytes: their size and SHA-256 are the manifest's, and they are one gzip stream that
    /// inflates to at most `maxBytes` (inflating stops there: a small body cannot cost more).
    /// - Returns: the inflated bytes.
    /// - Throws: ``ArchiveError`` `bodySizeMismatch`, `bodyHashMismatch`, `bodyCorrupt` or `bodyTooLarge`.
    public static func inflate(_ stored: [UInt8], manifest: ArchiveManifest, maxBytes: Int = ArchiveManifest.maxBodyBytes) throws(ArchiveError)
        -> [UInt8]
    {
        guard stored.count == manifest.body.size else {
            throw ArchiveError(.bodySizeMismatch, "the body is \(stored.count) bytes, the manifest says \(manifest.body.size)")
        }
        guard Hex.matches(manifest.body.sha256, SHA256.hash(data: stored)) else {
            throw ArchiveError(.bodyHashMismatch, "the body's SHA-256 is not the manifest's")
        }
        do {
            let reader = try GzipReader(stored, maxBytes: maxBytes)
            var output: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let read = chunk.withUnsafeMutableBytes { buffer in Result { () throws(BucketError) in try reader.read(into: buffer) } }
                let count = try read.get()
                if count == 0 { break }
                output += chunk[..<count]
            }
            // zlib stops at the end of the first gzip member; anything after it is not part of the body.
            guard reader.consumedBytes == stored.count else { throw ArchiveError(.bodyCorrupt, "bytes follow the body's gzip stream") }
            return output
        } catch let error as BucketError {
            if error.kind == .tooLarge { throw ArchiveError(.bodyTooLarge, "the body inflates to more than \(maxBytes) bytes") }
            throw ArchiveError(.bodyCorrupt, "the body is not one complete gzip stream")
        } catch let error as ArchiveError {
            throw error
        } catch {
            throw ArchiveError(.bodyCorrupt, "\(error)")
        }
    }

    /// The inflated body split on LF: its lines (without LF), and the bytes after the last LF, if any (a body must end
    /// with LF, so those are an invalid event, found after every line).
    public static func lines(_ inflated: [UInt8]) -> (lines: [ArraySlice<UInt8>], unterminated: ArraySlice<UInt8>?) {
        var lines = inflated.split(separator: 0x0A, omittingEmptySubsequences: false)
        let rest = lines.removeLast()
        return (lines, rest.isEmpty ? nil : rest)
    }
}

extension GzipReader {
    /// How many input bytes zlib consumed: at the end of the stream, where the gzip member ended.
    var consumedBytes: Int { Int(stream.pointee.total_in) }
}

/// Checks an archive part's body, line by line, against its verified manifest (docs/PROTOCOL.md §13.9.4, checks 17–20).
///
/// Give it every line's event in body order with ``next(_:)`` (made by ``event(line:number:roomID:)``), then call
/// ``finish()``: the first fault is the one thrown, so a driver that verifies lines in parallel still reports the code
/// §13.9.4 names, by checking the lines before the first invalid one here and then reporting that one. A body that
/// passes holds exactly the events of the files its manifest names, in room order.
public struct ArchiveCheck: Sendable {
    struct Position: Hashable {
        var senderKey: String
        var seq: Int64
    }

    public let manifest: ArchiveManifest
    let chains: [String: ArchiveManifest.Chain]
    /// The times the files' names give their first and last events: (file index, time) by chain position.
    let boundaries: [Position: [(file: Int, ms: Int64)]]
    var reached: [String: Int64] = [:]
    var previous: EventOrder?
    var firstMs: Int64?
    var lastMs: Int64?
    var lines = 0
    /// The first file (in ``ArchiveManifest/files`` order) whose name's times its events break: check 20 comes last.
    var fileTimeFault: (file: Int, message: String)?

    /// - Throws: ``ArchiveError`` `fileNameInvalid` for a manifest that was not verified (``ArchiveManifest/init(parsing:name:listedSize:)``).
    public init(manifest: ArchiveManifest) throws(ArchiveError) {
        self.manifest = manifest
        chains = Dictionary(manifest.chains.map { ($0.senderKey, $0) }, uniquingKeysWith: { first, _ in first })
        var boundaries: [Position: [(file: Int, ms: Int64)]] = [:]
        for (index, (file, name)) in zip(manifest.files, try manifest.fileNames()).enumerated() {
            boundaries[Position(senderKey: file.senderKey, seq: file.firstSeq), default: []].append((index, name.startMs))
            boundaries[Position(senderKey: file.senderKey, seq: file.lastSeq), default: []].append((index, name.endMs))
        }
        self.boundaries = boundaries
    }

    /// Check 17's first rule: the event a line holds, if the line is the canonical wire form of an event that verifies
    /// (docs/PROTOCOL.md §5.6), of room `roomID`.
    /// - Parameter number: the line's number from 1, for the message.
    /// - Throws: ``ArchiveError`` `invalidEvent`.
    public static func event(line: ArraySlice<UInt8>, number: Int, roomID: String) throws(ArchiveError) -> VerifiedEvent {
        try event(Result { () throws(EventError) in try VerifiedEvent(parsing: line) }, line: line, number: number, roomID: roomID)
    }

    /// ``event(line:number:roomID:)`` for a line verified already (``VerifiedEvent/verifyInParallel(_:)``).
    public static func event(_ verified: Result<VerifiedEvent, EventError>, line: some Collection<UInt8>, number: Int, roomID: String)
        throws(ArchiveError) -> VerifiedEvent
    {
        let event: VerifiedEvent
        switch verified {
        case .success(let verified): event = verified
        case .failure(let error): throw ArchiveError(.invalidEvent, "line \(number): \(error.code.rawValue): \(error.message)")
        }
        guard event.wire.elementsEqual(line) else { throw ArchiveError(.invalidEvent, "line \(number) is not the event's canonical wire form") }
        guard event.event.roomID == roomID else { throw ArchiveError(.invalidEvent, "line \(number) is an event of another room") }
        return event
    }

    /// Check 17's other rules for the body's next line.
    /// - Throws: ``ArchiveError`` `invalidEvent`, `duplicateEvent`, `outOfOrder`, `unlistedSender` or `chainMismatch`.
    public mutating func next(_ verified: VerifiedEvent) throws(ArchiveError) {
        lines += 1
        let event = verified.event
        guard event.roomID == manifest.roomID else { throw ArchiveError(.invalidEvent, "line \(lines) is an event of another room") }
        let order = EventOrder(event)
        if let previous {
            if order == previous { throw ArchiveError(.duplicateEvent, "line \(lines) repeats the line before") }
            if order < previous { throw ArchiveError(.outOfOrder, "line \(lines) sorts before the line before") }
        }
        previous = order
        guard let chain = chains[event.senderKey] else { throw ArchiveError(.unlistedSender, "line \(lines) is by a device the manifest has no chain of") }
        let expected = reached[event.senderKey].map { $0 + 1 } ?? chain.firstSeq
        guard event.seq == expected, event.seq <= chain.lastSeq else {
            throw ArchiveError(
                .chainMismatch,
                expected > chain.lastSeq
                    ? "line \(lines) is at seq \(event.seq), past the chain's last seq \(chain.lastSeq)"
                    : "line \(lines) is at seq \(event.seq), where the chain's seq \(expected) was due")
        }
        reached[event.senderKey] = event.seq
        firstMs = firstMs ?? event.timestampMs
        lastMs = event.timestampMs
        for boundary in boundaries[Position(senderKey: event.senderKey, seq: event.seq)] ?? []
        where boundary.ms != event.timestampMs && boundary.file < (fileTimeFault?.file ?? .max) {
            fileTimeFault = (
                boundary.file, "\(manifest.files[boundary.file].name) names \(boundary.ms), its event at seq \(event.seq) is at \(event.timestampMs)"
            )
        }
    }

    /// Checks 18–20, once every line was given.
    /// - Throws: ``ArchiveError`` `chainMismatch`, `timeMismatch` or `fileTimeMismatch`.
    public func finish() throws(ArchiveError) {
        for chain in manifest.chains where reached[chain.senderKey] != chain.lastSeq {
            throw ArchiveError(.chainMismatch, "a chain ends at seq \(reached[chain.senderKey] ?? chain.firstSeq - 1), not at its last seq \(chain.lastSeq)")
        }
        guard firstMs == manifest.firstMs, lastMs == manifest.lastMs else {
            throw ArchiveError(
                .timeMismatch, "the events run from \(firstMs ?? 0) to \(lastMs ?? 0), the manifest says \(manifest.firstMs) to \(manifest.lastMs)")
        }
        if let fault = fileTimeFault { throw ArchiveError(.fileTimeMismatch, fault.message) }
    }

    /// Checks 17–20 for events already verified and made from the body's lines, in body order: what a part's events
    /// must be to be the ones its manifest describes.
    /// - Throws: ``ArchiveError`` with the code of the first fault.
    public static func check(_ manifest: ArchiveManifest, events: [VerifiedEvent]) throws(ArchiveError) {
        var check = try ArchiveCheck(manifest: manifest)
        for event in events { try check.next(event) }
        try check.finish()
    }

    /// Checks 13–20 for a verified manifest whose body is listed at its size (``ArchiveBody/checkListed(_:manifest:)``):
    /// the stored body inflated, and its lines verified on every core a chunk at a time and checked in order, so that
    /// at most the inflated body, its events and one chunk are held, and a body that fails early costs no more.
    /// - Returns: the body's events, in room order.
    /// - Throws: ``ArchiveError`` with the code of the first check that fails.
    public static func readInParallel(body stored: [UInt8], manifest: ArchiveManifest, chunkLines: Int = InputBounds.batchLines) throws(ArchiveError)
        -> [VerifiedEvent]
    {
        let (lines, unterminated) = ArchiveBody.lines(try ArchiveBody.inflate(stored, manifest: manifest))
        var check = try ArchiveCheck(manifest: manifest)
        var events: [VerifiedEvent] = []
        events.reserveCapacity(min(lines.count, manifest.events))
        var start = 0
        while start < lines.count {
            let chunk = lines[start..<min(lines.count, start + max(1, chunkLines))]
            for (offset, verified) in VerifiedEvent.verifyInParallel(chunk.map(Array.init)).enumerated() {
                let number = start + offset + 1
                let event = try event(verified, line: chunk[start + offset], number: number, roomID: manifest.roomID)
                try check.next(event)
                events.append(event)
            }
            start = chunk.endIndex
        }
        if unterminated != nil { throw ArchiveError(.invalidEvent, "line \(lines.count + 1) has no LF") }
        try check.finish()
        return events
    }

    /// Checks 12–20 for a verified manifest: the stored body (`listedSize` `nil` when none is listed) and its events.
    /// Verifies the events one after the other; a driver with cores to spare verifies the lines itself.
    /// - Returns: the body's events, in room order.
    /// - Throws: ``ArchiveError`` with the code of the first check that fails.
    public static func read(body stored: [UInt8], listedSize: Int64?, manifest: ArchiveManifest) throws(ArchiveError) -> [VerifiedEvent] {
        try ArchiveBody.checkListed(listedSize.map { ObjectInfo(key: manifest.body.key, size: $0) }, manifest: manifest)
        let (lines, unterminated) = ArchiveBody.lines(try ArchiveBody.inflate(stored, manifest: manifest))
        var check = try ArchiveCheck(manifest: manifest)
        var events: [VerifiedEvent] = []
        events.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            let event = try event(line: line, number: index + 1, roomID: manifest.roomID)
            try check.next(event)
            events.append(event)
        }
        if unterminated != nil { throw ArchiveError(.invalidEvent, "line \(lines.count + 1) has no LF") }
        try check.finish()
        return events
    }
}
