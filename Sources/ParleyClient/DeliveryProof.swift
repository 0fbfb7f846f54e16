import ParleyCore
import ParleyStore
import ParleySync

// Delivery proofs (docs/PROTOCOL.md §10.1): a message and the signed receipts that cover it, with as much of the
// room as a verifier with nothing else needs to replay it: the state in full, the chains to the message, its
// receipts and their heads stripped of content.

/// The first line of a delivery proof.
public struct DeliveryProofHeader: Sendable, Equatable {
    public static let format = "parley.delivery_proof.v1"
    /// A proof gives the keys of the sealed events it opens: the message and its receipts, one per device and kind.
    public static let maxMessageKeys = 1024

    public var roomID: String
    public var eventHash: String
    public var messageKeys: [ForwardedKey]

    public init(roomID: String, eventHash: String, messageKeys: [ForwardedKey]) {
        self.roomID = roomID
        self.eventHash = eventHash
        self.messageKeys = messageKeys
    }

    public var jsonValue: JSONValue {
        [
            "format": .string(Self.format), "room_id": .string(roomID), "event_hash": .string(eventHash),
            "message_keys": .array(
                messageKeys.map {
                    ["sender_key": .string($0.position.senderKey), "seq": .integer($0.position.seq), "key": .string(Base64.encode($0.key.bytes))]
                }),
        ]
    }

    /// Whether `line` claims to be a proof header (a JSON object whose `format` is a delivery proof's), so that
    /// `parley verify` checks its input as a proof rather than as events.
    public static func isClaimed(by line: [UInt8]) -> Bool {
        guard case .object(let object)? = try? JSONParser().parse(line), case .string(let format)? = object["format"] else { return false }
        return format.hasPrefix("parley.delivery_proof.")
    }

    public init(parsing line: [UInt8]) throws(ProofError) {
        guard case .object(let object)? = try? JSONParser().parse(line) else { throw ProofError("the first line is not a JSON object") }
        guard Set(object.keys) == ["format", "room_id", "event_hash", "message_keys"] else {
            throw ProofError("the header must have exactly format, room_id, event_hash and message_keys")
        }
        guard case .string(let format)? = object["format"], format == Self.format else {
            throw ProofError("this is not a \(Self.format) proof; a newer Parley may read it")
        }
        guard case .string(let roomID)? = object["room_id"], Identifier.problem(with: roomID, kind: .room) == nil else {
            throw ProofError("room_id is not a room id")
        }
        guard case .string(let hash)? = object["event_hash"], Hex.isLowercaseHex(hash, byteCount: 32) else {
            throw ProofError("event_hash must be 64 lowercase hex digits")
        }
        guard case .array(let entries)? = object["message_keys"], entries.count <= Self.maxMessageKeys else {
            throw ProofError("message_keys must be an array of at most \(Self.maxMessageKeys) keys")
        }
        var keys: [ForwardedKey] = []
        for entry in entries {
            guard case .object(let fields) = entry, Set(fields.keys) == ["sender_key", "seq", "key"],
                case .string(let senderKey)? = fields["sender_key"], case .integer(let seq)? = fields["seq"], seq >= 1,
                case .string(let encoded)? = fields["key"], let bytes = Base64.decode(encoded), let key = try? MessageKey(bytes: bytes)
            else { throw ProofError("each message key must be {sender_key, seq ≥ 1, key: base64 of 32 bytes}") }
            keys.append(ForwardedKey(position: ChainPosition(senderKey: senderKey, seq: seq), key: key))
        }
        self.init(roomID: roomID, eventHash: hash, messageKeys: keys)
    }
}

public struct ProofError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// What checking a delivery proof found.
public struct DeliveryProofReport: Sendable {
    /// A receipt in the proof that covers the message.
    public struct Confirmation: Sendable, Equatable {
        public var readerID: String
        public var readerKey: String
        public var kind: ReceiptKind
        /// The time the receipt claims (signed by the reader, not checked by anyone).
        public var timestampMs: Int64
        public var receiptEventID: String
    }

    public var lines = 0
    public var header: DeliveryProofHeader?
    /// The event the proof is about, once found and verified.
    public var event: Event?
    /// Its type and content when the proof carries them (plain, or sealed and opened by a key of the header).
    public var opened: (type: String, content: JSONObject)?
    /// The room's creation as the proof's events establish it: a verifier compares it with the room it knows.
    public var creation: RoomCreation?
    public var confirmations: [Confirmation] = []
    public var problems: [String] = []

    /// Sound, and at least one other device's receipt covers the message.
    public var isValid: Bool { problems.isEmpty && !confirmations.isEmpty && event != nil }
}

public enum DeliveryProofChecker {
    /// Problems of single lines shown word for word; the rest are counted.
    static let shownLineProblems = 20
    /// A proof is checked in memory: one longer than this many events is refused unread (a proof holds its room's
    /// chains only up to the receipts, far fewer in any room this node could hold).
    public static let maxEvents = 1_000_000

    /// Checks the proof whose header is `headerLine` and whose events `reader` holds (after the header), reading at
    /// most `maxEvents` of them.
    public static func check(headerLine: [UInt8], events reader: inout JSONLReader, maxEvents: Int = maxEvents) throws -> DeliveryProofReport {
        var report = DeliveryProofReport()
        report.lines = 1
        let header: DeliveryProofHeader
        do { header = try DeliveryProofHeader(parsing: headerLine) } catch {
            report.problems.append("line 1: \(error.description)")
            return report
        }
        report.header = header
        var ledger = Ledger()
        var lineProblems = 0
        func problem(_ line: Int, _ message: String) {
            lineProblems += 1
            if lineProblems <= shownLineProblems { report.problems.append("line \(line): \(message)") }
        }
        var batch: [(line: Int, bytes: [UInt8])] = []
        func flush() {
            for (line, result) in zip(batch.map(\.line), VerifiedEvent.verifyInParallel(batch.map(\.bytes))) {
                switch result {
                case .failure(let error): problem(line, "invalid event: \(error.message)")
                case .success(let event) where event.event.roomID != header.roomID:
                    problem(line, "an event of room \(event.event.roomID), not of \(header.roomID)")
                case .success(let event):
                    for (released, outcome) in ledger.ingest(event) {
                        switch outcome {
                        case .fork: problem(line, "fork: device \(released.event.senderKey.prefix(12))… signed two events at seq \(released.event.seq)")
                        case .rejected(let reason): problem(line, "chain: \(reason)")
                        case .chained, .duplicate, .awaitingPredecessor: break
                        }
                    }
                }
            }
            batch.removeAll(keepingCapacity: true)
        }
        reading: while let next = try reader.next() {
            switch next {
            case .line(let number, let bytes):
                report.lines = number
                guard number <= maxEvents + 1 else {
                    report.problems.append("the proof has more than \(maxEvents) events; not read further")
                    break reading
                }
                batch.append((number, bytes))
                if batch.count == 4096 { flush() }
            case .tooLong(let number, let length):
                report.lines = number
                problem(number, "line of \(length) bytes is longer than the limit of \(reader.maxLineBytes)")
            }
        }
        flush()
        if lineProblems > shownLineProblems { report.problems.append("… and \(lineProblems - shownLineProblems) more problems in single lines") }
        for (event, seq) in ledger.heldBack.prefix(shownLineProblems) {
            report.problems.append("gap: seq \(seq) of device \(event.event.senderKey.prefix(12))… is missing, so its later events cannot be chained")
        }
        let events = ledger.rooms[header.roomID] ?? []
        let replay = RoomReplay(roomID: header.roomID, events: events)
        report.creation = replay.state.creation
        guard let message = events.first(where: { $0.hash == header.eventHash }) else {
            report.problems.append("the proof does not hold the event it is about (hash \(header.eventHash.prefix(16))…)")
            return report
        }
        report.event = message.event
        if case .rejected(let reason)? = replay.verdicts[message.hash] {
            report.problems.append("the event is not authorized in the room the proof replays: \(reason)")
        }
        let hashes = Dictionary(events.map { (ChainPosition($0.event), $0.hash) }, uniquingKeysWith: { first, _ in first })
        let byPosition = Dictionary(events.map { (ChainPosition($0.event), $0) }, uniquingKeysWith: { first, _ in first })
        // Every key given must open its event, whether or not that event matters to the proof.
        var opened: [ChainPosition: (type: String, content: JSONObject)] = [:]
        for given in header.messageKeys {
            guard let event = byPosition[given.position], let content = event.event.content, event.event.type == EventType.encrypted,
                case .encrypted(let sealed)? = try? EventContent.parse(type: event.event.type, content: content, roomID: header.roomID)
            else {
                report.problems.append(
                    "the header gives a key for seq \(given.position.seq) of device \(given.position.senderKey.prefix(12))…, which the proof does not hold sealed"
                )
                continue
            }
            do {
                opened[given.position] = try RoomCipher.open(sealed, messageKey: given.key, associatedData: RoomCipher.associatedData(of: event.event))
            } catch {
                report.problems.append("the key given for \(event.event.eventID) does not open it: \(error.message)")
            }
        }
        func view(_ event: VerifiedEvent) -> (type: String, content: JSONObject)? {
            guard let content = event.event.content else { return nil }
            return event.event.type == EventType.encrypted ? opened[ChainPosition(event.event)] : (event.event.type, content)
        }
        report.opened = view(message)
        var earliest: [String: DeliveryProofReport.Confirmation] = [:]
        for receipt in events where receipt.event.senderKey != message.event.senderKey && replay.verdicts[receipt.hash] == .accepted {
            guard receipt.event.type == EventType.receipt || receipt.event.type == EventType.encrypted, let opened = view(receipt),
                case .receipt(let kind, _, let heads)? = try? EventContent.parse(type: opened.type, content: opened.content, roomID: header.roomID)
            else { continue }
            let covers = heads.contains { head in
                head.position.senderKey == message.event.senderKey && head.position.seq >= message.event.seq && hashes[head.position] == head.hash
            }
            guard covers else { continue }
            let confirmation = DeliveryProofReport.Confirmation(
                readerID: receipt.event.senderID, readerKey: receipt.event.senderKey, kind: kind,
                timestampMs: max(receipt.event.timestampMs, message.event.timestampMs), receiptEventID: receipt.event.eventID)
            let slot = "\(kind.rawValue) \(receipt.event.senderKey)"
            if confirmation.timestampMs < earliest[slot]?.timestampMs ?? .max { earliest[slot] = confirmation }
        }
        report.confirmations = earliest.values.sorted { ($0.readerID, $0.readerKey, $0.kind.rawValue) < ($1.readerID, $1.readerKey, $1.kind.rawValue) }
        if report.confirmations.isEmpty { report.problems.append("no receipt of another device in the proof covers the event") }
        return report
    }
}

extension Node {
    /// The receipts of other devices that cover the event `eventID` (of several carrying the id, this device's own):
    /// the earliest of each device and kind, its time never before the event's own.
    /// - Throws: ``ClientError`` `.unknownEvent`.
    public func coveringReceipts(eventID: String) throws -> (event: VerifiedEvent, receipts: [ReceiptCoverage]) {
        guard let stored = try store.event(eventID: eventID, preferringSender: identity.signingKeyBase64) else {
            throw ClientError(.unknownEvent, "This node does not hold event \(eventID).")
        }
        let event = stored.event.event
        let receipts = try store.receiptsCovering(roomID: event.roomID, position: ChainPosition(event)).filter { $0.readerKey != event.senderKey }
        return (
            stored.event,
            receipts.map { receipt in
                var receipt = receipt
                receipt.timestampMs = max(receipt.timestampMs, event.timestampMs)
                return receipt
            }
        )
    }

    /// A delivery proof of the event `eventID`: its lines (header first), and the receipts it carries. The keys of
    /// sealed receipts travel with it, each opening that one receipt; the message's key too unless `keepSealed`.
    /// - Throws: ``ClientError`` `.unknownEvent`; `.notFound` when no other device's receipt covers the event yet.
    public func deliveryProof(eventID: String, keepSealed: Bool = false) throws -> (lines: [[UInt8]], receipts: [ReceiptCoverage]) {
        let (message, receipts) = try coveringReceipts(eventID: eventID)
        let event = message.event
        guard event.content != nil else {
            throw ClientError(.notAllowed, "Event \(eventID) was redacted: its content is gone, so no proof can show it.")
        }
        guard !receipts.isEmpty else {
            throw ClientError(
                .notFound, "No other device's receipt covers \(eventID) yet, so there is nothing to prove.",
                remedy: "See where it stands with parley status \(eventID); sync, and try again once a device received it.")
        }
        let position = ChainPosition(event)
        let full = Set([position] + receipts.map(\.receiptPosition))
        let sealed = Array(full).filter { !keepSealed || $0 != position }
        let header = DeliveryProofHeader(
            roomID: event.roomID, eventHash: message.hash,
            messageKeys: try store.messageKeys(roomID: event.roomID, at: sealed).sorted { $0.position < $1.position })
        let heads = receipts.map { ChainPosition(senderKey: event.senderKey, seq: $0.headSeq) }
        let events = try store.proofEvents(roomID: event.roomID, full: full, through: heads)
        return ([CanonicalJSON.encode(header.jsonValue)] + events, receipts)
    }
}
