import Crypto
import ParleyCore

/// Why an archive part (docs/PROTOCOL.md §13.9) was refused: the code of the first check of §13.9.4 it failed, or of
/// the choice of sets (§13.9.5). Codes are normative; messages are for people.
public struct ArchiveError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable, CaseIterable {
        case manifestTooLarge = "manifest_too_large"
        case manifestMalformed = "manifest_malformed"
        case unknownFormat = "unknown_format"
        case keyMismatch = "key_mismatch"
        case badSignature = "bad_signature"
        case countMismatch = "count_mismatch"
        case fileNameInvalid = "file_name_invalid"
        case fileSenderMismatch = "file_sender_mismatch"
        case fileNotCovered = "file_not_covered"
        case filesNotContiguous = "files_not_contiguous"
        case bodyMissing = "body_missing"
        case bodySizeMismatch = "body_size_mismatch"
        case bodyHashMismatch = "body_hash_mismatch"
        case bodyCorrupt = "body_corrupt"
        case bodyTooLarge = "body_too_large"
        case invalidEvent = "invalid_event"
        case duplicateEvent = "duplicate_event"
        case outOfOrder = "out_of_order"
        case unlistedSender = "unlisted_sender"
        case chainMismatch = "chain_mismatch"
        case timeMismatch = "time_mismatch"
        case fileTimeMismatch = "file_time_mismatch"
        /// The node's check once a part's events are stored: its signer is no key of the room's state.
        case signerNotMember = "signer_not_member"
        case setIncomplete = "set_incomplete"
        case setOverlap = "set_overlap"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The code and what it found: `chain_mismatch: …`.
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The name of an archive part's two objects (docs/PROTOCOL.md §13.1):
/// `rooms/{room}/archive/{date}/{first_ts}_{last_ts}_{client}.manifest.json` and the same with `.jsonl.gz`.
public struct ArchiveName: Sendable, Hashable {
    public enum Kind: Sendable, Equatable { case manifest, body }

    public var roomID: String
    /// The `timestamp_ms` of the part's first and last event.
    public var firstMs: Int64
    public var lastMs: Int64
    public var clientID: String

    public init(roomID: String, firstMs: Int64, lastMs: Int64, clientID: String) {
        self.roomID = roomID
        self.firstMs = firstMs
        self.lastMs = lastMs
        self.clientID = clientID
    }

    /// The day archived (YYYY-MM-DD, UTC): the date of ``firstMs``.
    public var date: String { BucketLayout.utcDate(firstMs) }
    public var manifestKey: String { stem + ".manifest.json" }
    public var bodyKey: String { stem + ".jsonl.gz" }

    var stem: String {
        "\(BucketLayout.archivePrefix(roomID))\(date)/\(BucketLayout.digits(firstMs))_\(BucketLayout.digits(lastMs))_\(clientID)"
    }

    /// Parses a key found under `rooms/{roomID}/archive/`.
    /// - Returns: the name and which of the pair the key is, or why the key is no archive object (it is then ignored,
    ///   with a warning).
    public static func parse(key: String, roomID: String) -> Result<(name: ArchiveName, kind: Kind), LogFileName.NameProblem> {
        let prefix = BucketLayout.archivePrefix(roomID)
        guard key.hasPrefix(prefix) else { return .failure(.init("not under \(prefix)")) }
        let parts = key.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .failure(.init("not of the form {YYYY-MM-DD}/{first}_{last}_{client}.manifest.json")) }
        guard BucketLayout.isCalendarDate(parts[0]) else {
            return .failure(.init("the folder \(ObjectKey.debugQuoted(String(parts[0]))) is not a YYYY-MM-DD date"))
        }
        var stem = parts[1]
        let kind: Kind
        if stem.hasSuffix(".manifest.json") {
            kind = .manifest
            stem = stem.dropLast(14)
        } else if stem.hasSuffix(".jsonl.gz") {
            kind = .body
            stem = stem.dropLast(9)
        } else {
            return .failure(.init("not a .manifest.json or .jsonl.gz object"))
        }
        let fields = stem.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3, let first = BucketLayout.parseDigits(fields[0]), let last = BucketLayout.parseDigits(fields[1]) else {
            return .failure(.init("the name has no {first}_{last} millisecond times"))
        }
        guard first <= last, last <= EventID.maxTimestampMs else { return .failure(.init("the name's time range is not one")) }
        if let problem = Identifier.problem(with: String(fields[2]), kind: .client) { return .failure(.init("the name's \(problem)")) }
        let name = ArchiveName(roomID: roomID, firstMs: first, lastMs: last, clientID: String(fields[2]))
        // One spelling per name: 13-digit times, and the folder of the first time's day.
        guard (kind == .manifest ? name.manifestKey : name.bodyKey) == key else {
            return .failure(.init("not written as a writer writes it (its folder is the day of its first time, its times 13 digits)"))
        }
        return .success((name, kind))
    }
}

/// An archive part's manifest (docs/PROTOCOL.md §13.9.3): what its body holds, which log files that covers, signed by
/// the device that wrote it.
public struct ArchiveManifest: Sendable, Equatable {
    public static let format = "parley.bucket.archive.v1"
    /// The domain-separation prefix of manifest signatures: `parley.archive.v1` and LF.
    public static let signaturePrefix: [UInt8] = Array("parley.archive.v1\n".utf8)
    /// Most bytes of a manifest.
    public static let maxBytes = 4_194_304
    /// Most events in a part.
    public static let maxEvents = 100_000
    /// Most bytes of a body before compression, and of one as stored.
    public static let maxBodyBytes = 67_108_864
    /// Most files (and chains) a manifest names.
    public static let maxEntries = 20_000
    static let maxFileNameBytes = 1024

    /// A run of one device's chain that the body holds.
    public struct Chain: Sendable, Equatable {
        public var senderKey: String
        public var firstSeq: Int64
        public var lastSeq: Int64

        public init(senderKey: String, firstSeq: Int64, lastSeq: Int64) {
            self.senderKey = senderKey
            self.firstSeq = firstSeq
            self.lastSeq = lastSeq
        }
    }

    /// A log file the part covers, and the run of its sender's chain it holds.
    public struct File: Sendable, Equatable {
        /// The file's key without `rooms/{room}/logs/`.
        public var name: String
        /// Its size as the bucket lists it, in bytes.
        public var size: Int64
        public var senderKey: String
        public var firstSeq: Int64
        public var lastSeq: Int64

        public init(name: String, size: Int64, senderKey: String, firstSeq: Int64, lastSeq: Int64) {
            self.name = name
            self.size = size
            self.senderKey = senderKey
            self.firstSeq = firstSeq
            self.lastSeq = lastSeq
        }

        /// The file's object key in room `roomID`.
        public func key(roomID: String) -> String { BucketLayout.logsPrefix(roomID) + name }
    }

    /// The body as stored.
    public struct Body: Sendable, Equatable {
        public var key: String
        /// Lowercase hex SHA-256 of the stored (compressed) bytes.
        public var sha256: String
        public var size: Int64

        public init(key: String, sha256: String, size: Int64) {
            self.key = key
            self.sha256 = sha256
            self.size = size
        }
    }

    /// Where the manifest is stored; not part of its JSON, but what its members must agree with (check 5).
    public var name: ArchiveName
    public var roomID: String
    public var date: String
    public var firstMs: Int64
    public var lastMs: Int64
    /// This part's number in its set, from 1, and the number of parts.
    public var part: Int
    public var parts: Int
    /// Base64 of the writing device's Ed25519 key.
    public var signer: String
    /// Events in the body.
    public var events: Int
    public var body: Body
    /// Sorted by sender key (bytewise).
    public var chains: [Chain]
    /// Sorted by name (bytewise).
    public var files: [File]
    /// Base64 of the Ed25519 signature; empty until signed.
    public var signature: String

    public init(
        name: ArchiveName, part: Int, parts: Int, signer: String, events: Int, body: Body, chains: [Chain], files: [File], signature: String = ""
    ) {
        self.name = name
        roomID = name.roomID
        date = name.date
        firstMs = name.firstMs
        lastMs = name.lastMs
        self.part = part
        self.parts = parts
        self.signer = signer
        self.events = events
        self.body = body
        self.chains = chains
        self.files = files
        self.signature = signature
    }

    /// The manifest as a JSON object; `signature` only when asked for.
    public func jsonObject(includingSignature: Bool = true) -> JSONObject {
        func run(_ senderKey: String, _ first: Int64, _ last: Int64) -> JSONObject {
            JSONObject(["first_seq": .integer(first), "last_seq": .integer(last), "sender": .string(senderKey)])
        }
        var object = JSONObject()
        object["body"] = .object(JSONObject(["key": .string(body.key), "sha256": .string(body.sha256), "size": .integer(body.size)]))
        object["chains"] = .array(chains.map { .object(run($0.senderKey, $0.firstSeq, $0.lastSeq)) })
        object["date"] = .string(date)
        object["events"] = .integer(Int64(events))
        object["files"] = .array(
            files.map { file in
                var entry = run(file.senderKey, file.firstSeq, file.lastSeq)
                entry["name"] = .string(file.name)
                entry["size"] = .integer(file.size)
                return .object(entry)
            })
        object["first_ts"] = .integer(firstMs)
        object["format"] = .string(Self.format)
        object["last_ts"] = .integer(lastMs)
        object["part"] = .integer(Int64(part))
        object["parts"] = .integer(Int64(parts))
        object["room_id"] = .string(roomID)
        object["signer"] = .string(signer)
        if includingSignature { object["signature"] = .string(signature) }
        return object
    }

    /// The bytes the signature covers: the prefix, then the canonical manifest without `signature`.
    public var signingInput: [UInt8] { Self.signaturePrefix + CanonicalJSON.encode(.object(jsonObject(includingSignature: false))) }

    /// The manifest as written: its canonical form and LF.
    public func encoded() -> [UInt8] { CanonicalJSON.encode(.object(jsonObject())) + [0x0A] }

    /// Signs the manifest as `key`'s device, which becomes its signer.
    public mutating func sign(with key: DeviceSigningKey) {
        sign(as: key.publicKeyBase64, with: key.sign)
    }

    /// Signs the manifest as the device of `signer` (base64), whose key `sign` signs with without handing it over.
    public mutating func sign<E: Error>(as signer: String, with sign: ([UInt8]) throws(E) -> [UInt8]) throws(E) {
        self.signer = signer
        signature = Base64.encode(try sign(signingInput))
    }

    /// Whether the fingerprint a client id names (docs/PROTOCOL.md §13.9.4) begins SHA-256 of `key`; true when it names
    /// none.
    static func fingerprintMatches(_ clientID: String, key: String) -> Bool {
        // `LogFileName` knows the client id forms; the room and times play no part.
        guard let claimed = LogFileName(roomID: "r", startMs: 0, endMs: 0, clientID: clientID).claimedFingerprintPrefix else { return true }
        return InviteCode.fingerprint(ofKey: key)?.hasPrefix(claimed) == true
    }
}

extension ArchiveManifest {
    /// Parses a manifest stored under `name` and makes checks 1–11 of docs/PROTOCOL.md §13.9.4: bounded, strict, its
    /// members agreeing with its key, signed by its signer, and its chains and files consistent.
    /// - Parameter listedSize: the size the listing gave, when known (check 1 refuses it before anything is read).
    /// - Throws: ``ArchiveError`` with the code of the first check that fails.
    public init(parsing bytes: [UInt8], name: ArchiveName, listedSize: Int64? = nil) throws(ArchiveError) {
        if (listedSize ?? 0) > Int64(Self.maxBytes) || bytes.count > Self.maxBytes {
            throw ArchiveError(.manifestTooLarge, "the manifest is over \(Self.maxBytes) bytes")
        }
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: 3, maxBytes: Self.maxBytes).parse(bytes)
        } catch {
            throw ArchiveError(.manifestMalformed, "not JSON: \(error)")
        }
        guard case .object(let object) = value else { throw ArchiveError(.manifestMalformed, "not a JSON object") }
        guard object["format"] == .string(Self.format) else { throw ArchiveError(.unknownFormat, "its format is not \(Self.format)") }
        self = try Self.members(of: object, name: name)
        try checkKey()
        do {
            try StrictEd25519.verify(signature: Base64.decode(signature) ?? [], message: signingInput, publicKey: Base64.decode(signer) ?? [])
        } catch {
            throw ArchiveError(.badSignature, "the signature does not verify: \(error)")
        }
        try checkCoverage()
    }

    /// Check 4: every member present, known and of its form.
    static func members(of object: JSONObject, name: ArchiveName) throws(ArchiveError) -> ArchiveManifest {
        func malformed(_ what: String) -> ArchiveError { ArchiveError(.manifestMalformed, what) }
        func exactly(_ object: JSONObject, _ keys: [String], _ what: String) throws(ArchiveError) {
            guard object.keys == keys else { throw malformed("\(what) must have exactly the members \(keys.joined(separator: ", "))") }
        }
        func integer(_ value: JSONValue?, _ range: ClosedRange<Int64>, _ what: String) throws(ArchiveError) -> Int64 {
            guard let number = value?.integerValue, range.contains(number) else { throw malformed("\(what) must be an integer in \(range)") }
            return number
        }
        func string(_ value: JSONValue?, _ what: String) throws(ArchiveError) -> String {
            guard let text = value?.stringValue else { throw malformed("\(what) must be a string") }
            return text
        }
        func key(_ value: JSONValue?, _ what: String, bytes: Int = 32) throws(ArchiveError) -> String {
            let text = try string(value, what)
            guard Base64.isCanonical(text, byteCount: bytes) else { throw malformed("\(what) must be padded base64 of \(bytes) bytes") }
            return text
        }
        func run(_ value: JSONValue, _ keys: [String], _ what: String) throws(ArchiveError) -> (JSONObject, String, Int64, Int64) {
            guard case .object(let entry) = value else { throw malformed("\(what) must hold objects") }
            try exactly(entry, keys, "an entry of \(what)")
            let first = try integer(entry["first_seq"], 1...JSONValue.maxSafeInteger, "first_seq")
            let last = try integer(entry["last_seq"], first...JSONValue.maxSafeInteger, "last_seq (at least first_seq)")
            return (entry, try key(entry["sender"], "sender"), first, last)
        }
        func entries(_ value: JSONValue?, _ what: String) throws(ArchiveError) -> [JSONValue] {
            guard let items = value?.arrayValue, (1...maxEntries).contains(items.count) else {
                throw malformed("\(what) must be an array of 1 to \(maxEntries) entries")
            }
            return items
        }
        func ascending(_ texts: [String], _ what: String) throws(ArchiveError) {
            for (earlier, later) in zip(texts, texts.dropFirst()) where !earlier.utf8.lexicographicallyPrecedes(later.utf8) {
                throw malformed("\(what) must be sorted bytewise, without repeats")
            }
        }

        try exactly(
            object, ["body", "chains", "date", "events", "files", "first_ts", "format", "last_ts", "part", "parts", "room_id", "signature", "signer"],
            "the manifest")
        let roomID = try string(object["room_id"], "room_id")
        if let problem = Identifier.problem(with: roomID, kind: .room) { throw malformed("room_id: \(problem)") }
        let date = try string(object["date"], "date")
        guard BucketLayout.isCalendarDate(Substring(date)) else { throw malformed("date must be a YYYY-MM-DD date") }
        let firstMs = try integer(object["first_ts"], 0...EventID.maxTimestampMs, "first_ts")
        let lastMs = try integer(object["last_ts"], firstMs...EventID.maxTimestampMs, "last_ts (at least first_ts)")
        let parts = try integer(object["parts"], 1...JSONValue.maxSafeInteger, "parts")
        let part = try integer(object["part"], 1...parts, "part (at most parts)")
        let signer = try key(object["signer"], "signer")
        let signature = try key(object["signature"], "signature", bytes: 64)
        let events = try integer(object["events"], 1...Int64(maxEvents), "events")
        guard case .object(let bodyObject)? = object["body"] else { throw malformed("body must be an object") }
        try exactly(bodyObject, ["key", "sha256", "size"], "body")
        let body = Body(
            key: try string(bodyObject["key"], "body.key"), sha256: try string(bodyObject["sha256"], "body.sha256"),
            size: try integer(bodyObject["size"], 1...Int64(maxBodyBytes), "body.size"))
        guard Hex.isLowercaseHex(body.sha256, byteCount: 32) else { throw malformed("body.sha256 must be 64 lowercase hex digits") }
        var chains: [Chain] = []
        for item in try entries(object["chains"], "chains") {
            let (_, sender, first, last) = try run(item, ["first_seq", "last_seq", "sender"], "chains")
            chains.append(Chain(senderKey: sender, firstSeq: first, lastSeq: last))
        }
        try ascending(chains.map(\.senderKey), "chains")
        var files: [File] = []
        for item in try entries(object["files"], "files") {
            let (entry, sender, first, last) = try run(item, ["first_seq", "last_seq", "name", "sender", "size"], "files")
            let fileName = try string(entry["name"], "a file's name")
            guard (1...maxFileNameBytes).contains(fileName.utf8.count) else { throw malformed("a file's name must be 1 to \(maxFileNameBytes) bytes") }
            let size = try integer(entry["size"], 1...JSONValue.maxSafeInteger, "a file's size")
            files.append(File(name: fileName, size: size, senderKey: sender, firstSeq: first, lastSeq: last))
        }
        try ascending(files.map(\.name), "files")
        var manifest = ArchiveManifest(
            name: name, part: Int(part), parts: Int(parts), signer: signer, events: Int(events), body: body, chains: chains, files: files,
            signature: signature)
        // As the manifest says, not as its key does: check 5 compares them.
        manifest.roomID = roomID
        manifest.date = date
        manifest.firstMs = firstMs
        manifest.lastMs = lastMs
        return manifest
    }

    /// Check 5: the members agree with the key the manifest is stored under.
    func checkKey() throws(ArchiveError) {
        func mismatch(_ what: String) -> ArchiveError { ArchiveError(.keyMismatch, "\(what) is not its key's (\(name.manifestKey))") }
        if roomID != name.roomID { throw mismatch("room_id \(roomID)") }
        if date != name.date { throw mismatch("date \(date)") }
        if firstMs != name.firstMs || lastMs != name.lastMs { throw mismatch("first_ts…last_ts \(firstMs)…\(lastMs)") }
        if body.key != name.bodyKey { throw mismatch("body.key \(ObjectKey.debugQuoted(body.key))") }
        if !Self.fingerprintMatches(name.clientID, key: signer) {
            throw ArchiveError(.keyMismatch, "the key's client id \(name.clientID) names another device than the signer")
        }
    }

    /// Checks 7–11: the count, the files' names, and how the files lie on the chains.
    func checkCoverage() throws(ArchiveError) {
        let total = chains.reduce(0) { $0 + ($1.lastSeq - $1.firstSeq + 1) }
        guard total == Int64(events) else { throw ArchiveError(.countMismatch, "events is \(events), the chains hold \(total)") }
        let names = try fileNames()
        for (file, parsed) in zip(files, names) where !Self.fingerprintMatches(parsed.clientID, key: file.senderKey) {
            throw ArchiveError(.fileSenderMismatch, "\(file.name) names another device than its sender")
        }
        let chainsBySender = Dictionary(chains.map { ($0.senderKey, $0) }, uniquingKeysWith: { first, _ in first })
        for file in files {
            guard let chain = chainsBySender[file.senderKey], chain.firstSeq <= file.firstSeq, file.lastSeq <= chain.lastSeq else {
                throw ArchiveError(.fileNotCovered, "\(file.name) claims seq \(file.firstSeq)…\(file.lastSeq), outside what the body holds of its sender")
            }
        }
        let filesBySender = Dictionary(grouping: files, by: \.senderKey)
        for chain in chains {
            var next = chain.firstSeq
            for file in (filesBySender[chain.senderKey] ?? []).sorted(by: { $0.firstSeq < $1.firstSeq }) {
                guard file.firstSeq == next else {
                    throw ArchiveError(.filesNotContiguous, "\(file.name) starts at seq \(file.firstSeq), where seq \(next) was due")
                }
                next = file.lastSeq + 1
            }
            guard next == chain.lastSeq + 1 else {
                throw ArchiveError(.filesNotContiguous, "the files of a device end at seq \(next - 1), its chain at \(chain.lastSeq)")
            }
        }
    }

    /// Check 8: each file's name, parsed; in the order of ``files``.
    func fileNames() throws(ArchiveError) -> [LogFileName] {
        var names: [LogFileName] = []
        names.reserveCapacity(files.count)
        for file in files {
            let key = file.key(roomID: roomID)
            guard case .success(let parsed) = LogFileName.parse(key: key, roomID: roomID), parsed.key == key else {
                throw ArchiveError(.fileNameInvalid, "\(ObjectKey.debugQuoted(file.name)) is not a log file's name as a writer writes it")
            }
            guard parsed.dateFolder == date, parsed.isDateConsistent else {
                throw ArchiveError(.fileNameInvalid, "\(file.name) is not a file of \(date) in its own day's folder")
            }
            names.append(parsed)
        }
        return names
    }
}
