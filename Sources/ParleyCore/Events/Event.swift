import Crypto

/// One signed Parley event (docs/PROTOCOL.md §5): the envelope fields, plus `content`, which is detachable.
///
/// The signature and the event hash cover every field except `content`; `content` is bound through
/// `contentHash`, so a stripped (redacted) event still verifies. `Event` is only structurally valid; a
/// ``VerifiedEvent`` is one whose content hash and signature have been checked.
public struct Event: Sendable, Equatable {
    public var eventID: String
    public var roomID: String
    /// Unix time in milliseconds, as claimed by the sender.
    public var timestampMs: Int64
    public var senderID: String
    /// Base64 of the signing device's raw 32-byte Ed25519 public key.
    public var senderKey: String
    /// Position in the sender device's chain in this room, from 1.
    public var seq: Int64
    public var type: String
    public var parentEventID: String?
    /// Lowercase hex event hash of the previous event of this device in this room; `nil` exactly when `seq` is 1.
    public var prevEventHash: String?
    /// `nil` when the content has been stripped (after a redaction) or not fetched.
    public var content: JSONObject?
    /// Lowercase hex SHA-256 of the canonical form of `content`.
    public var contentHash: String
    /// Base64 of the 64-byte Ed25519 signature.
    public var signature: String

    /// The largest canonical wire form of an event, in bytes.
    public static let maxWireBytes = 65_536
    /// The domain-separation prefix of event signatures.
    public static let signaturePrefix: [UInt8] = Array("parley.event.v1\n".utf8)

    public init(
        eventID: String, roomID: String, timestampMs: Int64, senderID: String, senderKey: String, seq: Int64,
        type: String, parentEventID: String? = nil, prevEventHash: String?, content: JSONObject?, contentHash: String,
        signature: String
    ) {
        self.eventID = eventID
        self.roomID = roomID
        self.timestampMs = timestampMs
        self.senderID = senderID
        self.senderKey = senderKey
        self.seq = seq
        self.type = type
        self.parentEventID = parentEventID
        self.prevEventHash = prevEventHash
        self.content = content
        self.contentHash = contentHash
        self.signature = signature
    }

    public var isStripped: Bool { content == nil }
}

/// Why an event was rejected before it reached chain or state checks.
public struct EventError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        case malformedJSON = "malformed_json"
        case notAnObject = "not_an_object"
        case missingField = "missing_field"
        case wrongType = "wrong_type"
        case unknownField = "unknown_field"
        case invalidValue = "invalid_value"
        case tooLarge = "too_large"
        case contentHashMismatch = "content_hash_mismatch"
        case badSignature = "bad_signature"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

extension Event {
    /// The position of an envelope field in sorted order, or `nil` for any other key.
    static func fieldIndex(_ key: String) -> Int? {
        var key = key
        return key.withUTF8 { bytes -> Int? in
            // Told apart by length and a byte or two, then confirmed whole: a `switch` over the strings compared up to
            // twelve strings per lookup, and parsing an event looks up 24.
            guard bytes.count >= 3 else { return nil }
            let index: Int
            let name: StaticString
            switch (bytes[0], bytes.count) {
            case (UInt8(ascii: "c"), 7): (index, name) = (0, "content")
            case (UInt8(ascii: "c"), 12): (index, name) = (1, "content_hash")
            case (UInt8(ascii: "e"), 8): (index, name) = (2, "event_id")
            case (UInt8(ascii: "p"), 15): (index, name) = bytes[1] == UInt8(ascii: "a") ? (3, "parent_event_id") : (4, "prev_event_hash")
            case (UInt8(ascii: "r"), 7): (index, name) = (5, "room_id")
            case (UInt8(ascii: "s"), 9): (index, name) = bytes[1] == UInt8(ascii: "e") ? (6, "sender_id") : (9, "signature")
            case (UInt8(ascii: "s"), 10): (index, name) = (7, "sender_key")
            case (UInt8(ascii: "s"), 3): (index, name) = (8, "seq")
            case (UInt8(ascii: "t"), 12): (index, name) = (10, "timestamp_ms")
            case (UInt8(ascii: "t"), 4): (index, name) = (11, "type")
            default: return nil
            }
            // Same length by the case matched; a plain loop, since the generic `elementsEqual` walks iterators.
            return name.withUTF8Buffer { expected in
                for offset in 0..<expected.count where expected[offset] != bytes[offset] { return false }
                return true
            } ? index : nil
        }
    }

    /// The envelope fields in sorted order, numbered as ``fieldIndex(_:)`` numbers them.
    enum Field: Int, CaseIterable {
        case content, contentHash, eventID, parentEventID, prevEventHash, roomID, senderID, senderKey, seq, signature, timestampMs, type

        var name: String {
            [
                "content", "content_hash", "event_id", "parent_event_id", "prev_event_hash", "room_id", "sender_id", "sender_key", "seq",
                "signature", "timestamp_ms", "type",
            ][rawValue]
        }
    }

    /// Parses and structurally validates one event from its JSON bytes (one JSONL line).
    /// - Throws: ``EventError`` naming the field and the rule it breaks.
    public static func parse(_ bytes: some Collection<UInt8>, parser: JSONParser = JSONParser()) throws(EventError) -> Event {
        let value: JSONValue
        do { value = try parser.parse(bytes) } catch { throw EventError(.malformedJSON, "invalid JSON: \(error)") }
        return try Event(json: value)
    }

    /// Structurally validates an event given as a JSON value.
    public init(json: JSONValue) throws(EventError) {
        guard case .object(let object) = json else {
            throw EventError(.notAnObject, "an event must be a JSON object, found \(json.kindName)")
        }
        // One pass over the members instead of a lookup per field. Members are sorted by key and field names are
        // distinct, so a field's position among the members is enough to find it again.
        var positions: (Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8, Int8) = (-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
        let members = object.members
        for (position, member) in members.enumerated() {
            guard let index = Event.fieldIndex(member.key) else {
                throw EventError(.unknownField, "unknown field \"\(Identifier.printable(member.key))\"")
            }
            withUnsafeMutableBytes(of: &positions) { $0[index] = UInt8(truncatingIfNeeded: position) }
        }
        // Fields are found by their index in sorted order, not by name: looking the name up again cost as much as
        // matching the members.
        func field(_ field: Field) -> JSONValue? {
            let position = withUnsafeBytes(of: positions) { Int8(bitPattern: $0[field.rawValue]) }
            return position < 0 ? nil : members[Int(position)].value
        }
        func required(_ wanted: Field) throws(EventError) -> JSONValue {
            guard let value = field(wanted) else { throw EventError(.missingField, "missing field \"\(wanted.name)\"") }
            return value
        }
        func string(_ field: Field) throws(EventError) -> String {
            let value = try required(field)
            guard case .string(let text) = value else {
                throw EventError(.wrongType, "field \"\(field.name)\" must be a string, found \(value.kindName)")
            }
            return text
        }
        func integer(_ field: Field) throws(EventError) -> Int64 {
            let value = try required(field)
            guard case .integer(let number) = value else {
                throw EventError(.wrongType, "field \"\(field.name)\" must be an integer, found \(value.kindName)")
            }
            return number
        }

        roomID = try string(.roomID)
        if let problem = Identifier.problem(with: roomID, kind: .room) { throw EventError(.invalidValue, problem) }
        senderID = try string(.senderID)
        if let problem = Identifier.problem(with: senderID, kind: .user) { throw EventError(.invalidValue, problem) }
        timestampMs = try integer(.timestampMs)
        guard timestampMs >= 0 && timestampMs <= EventID.maxTimestampMs else {
            throw EventError(.invalidValue, "timestamp_ms \(timestampMs) is outside 0 … \(EventID.maxTimestampMs)")
        }
        eventID = try string(.eventID)
        if let problem = EventID.problem(with: eventID, roomID: roomID, timestampMs: timestampMs) {
            throw EventError(.invalidValue, problem)
        }
        senderKey = try string(.senderKey)
        guard Base64.isCanonical(senderKey, byteCount: 32) else {
            throw EventError(.invalidValue, "sender_key must be padded base64 of 32 bytes")
        }
        seq = try integer(.seq)
        guard seq >= 1 else { throw EventError(.invalidValue, "seq must be at least 1, found \(seq)") }
        type = try string(.type)
        if let problem = EventTypeName.problem(with: type) { throw EventError(.invalidValue, problem) }

        switch field(.parentEventID) {
        case nil: parentEventID = nil
        case .string(let parent)?:
            if let problem = EventID.problem(with: parent, roomID: roomID) {
                throw EventError(.invalidValue, "parent_event_id: \(problem)")
            }
            parentEventID = parent
        case let other?:
            throw EventError(.wrongType, "field \"parent_event_id\" must be a string or absent, found \(other.kindName)")
        }

        switch try required(.prevEventHash) {
        case .null: prevEventHash = nil
        case .string(let hash):
            guard Hex.isLowercaseHex(hash, byteCount: 32) else {
                throw EventError(.invalidValue, "prev_event_hash must be 64 lowercase hex digits")
            }
            prevEventHash = hash
        case let other:
            throw EventError(.wrongType, "field \"prev_event_hash\" must be a string or null, found \(other.kindName)")
        }
        if seq == 1 && prevEventHash != nil { throw EventError(.invalidValue, "prev_event_hash must be null at seq 1") }
        if seq > 1 && prevEventHash == nil { throw EventError(.invalidValue, "prev_event_hash is null at seq \(seq) (only seq 1 has none)") }

        contentHash = try string(.contentHash)
        guard Hex.isLowercaseHex(contentHash, byteCount: 32) else {
            throw EventError(.invalidValue, "content_hash must be 64 lowercase hex digits")
        }
        signature = try string(.signature)
        guard Base64.isCanonical(signature, byteCount: 64) else {
            throw EventError(.invalidValue, "signature must be padded base64 of 64 bytes")
        }
        switch field(.content) {
        case nil: content = nil
        case .object(let body)?: content = body
        case let other?: throw EventError(.wrongType, "field \"content\" must be an object, found \(other.kindName)")
        }
    }

    /// The event as a JSON object; `content` and `signature` only when asked for and present.
    public func jsonObject(includingContent: Bool = true, includingSignature: Bool = true) -> JSONObject {
        var object = JSONObject()
        object["event_id"] = .string(eventID)
        object["room_id"] = .string(roomID)
        object["timestamp_ms"] = .integer(timestampMs)
        object["sender_id"] = .string(senderID)
        object["sender_key"] = .string(senderKey)
        object["seq"] = .integer(seq)
        object["type"] = .string(type)
        if let parentEventID { object["parent_event_id"] = .string(parentEventID) }
        object["prev_event_hash"] = prevEventHash.map(JSONValue.string) ?? .null
        object["content_hash"] = .string(contentHash)
        if includingSignature { object["signature"] = .string(signature) }
        if includingContent, let content { object["content"] = .object(content) }
        return object
    }

    /// The canonical forms of this event, produced in one pass.
    ///
    /// The field names are fixed, so their canonical order is too: `content` sorts first and `signature` sits
    /// between `seq` and `timestamp_ms`. The envelope is encoded once; the wire form puts the content member in
    /// front of it and the signing input cuts the signature member out of it. Each equals the canonical encoding
    /// of the corresponding object (the tests compare them with ``jsonObject(includingContent:includingSignature:)``).
    public struct Encoding: Sendable {
        /// Canonical form of the whole event.
        public let wire: [UInt8]
        /// Where the value of `content` sits in `wire`, when present.
        let contentRange: Range<Int>?
        /// Canonical form without `content`.
        public let envelope: [UInt8]
        /// The bytes of `"signature":"…",` within `envelope`.
        let signatureMember: Range<Int>

        /// Canonical form of `content`, when present.
        public var content: ArraySlice<UInt8>? { contentRange.map { wire[$0] } }

        /// The bytes the signature covers: the prefix, then the envelope without `signature`.
        public var signingInput: [UInt8] {
            var bytes = Event.signaturePrefix
            bytes.reserveCapacity(bytes.count + envelope.count)
            bytes.append(contentsOf: envelope[..<signatureMember.lowerBound])
            bytes.append(contentsOf: envelope[signatureMember.upperBound...])
            return bytes
        }

        init(envelope: [UInt8], signatureMember: Range<Int>, content: [UInt8]?) {
            self.envelope = envelope
            self.signatureMember = signatureMember
            guard let content else {
                wire = envelope
                contentRange = nil
                return
            }
            let prefix = Array(#"{"content":"#.utf8)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(envelope.count + content.count + prefix.count + 1)
            bytes.append(contentsOf: prefix)
            bytes.append(contentsOf: content)
            bytes.append(UInt8(ascii: ","))
            bytes.append(contentsOf: envelope[1...])
            wire = bytes
            contentRange = prefix.count..<prefix.count + content.count
        }

        /// The encoding of an event whose input bytes were already canonical: slices of the input, nothing
        /// re-encoded. `members` are the top-level members the parser located.
        init?(canonicalWire wire: [UInt8], members: [(key: String, keyStart: Int, value: Range<Int>)]) {
            guard let signature = members.first(where: { $0.key == "signature" }) else { return nil }
            let signatureInWire = signature.keyStart..<signature.value.upperBound + 1
            if let content = members.first(where: { $0.key == "content" }) {
                // `content` sorts first: the envelope is "{" and everything after the content member's comma.
                let cut = content.value.upperBound + 1
                var envelope: [UInt8] = [UInt8(ascii: "{")]
                envelope.reserveCapacity(wire.count - cut + 1)
                envelope.append(contentsOf: wire[cut...])
                let shift = cut - 1
                self.envelope = envelope
                signatureMember = signatureInWire.lowerBound - shift..<signatureInWire.upperBound - shift
                contentRange = content.value
            } else {
                envelope = wire
                signatureMember = signatureInWire
                contentRange = nil
            }
            self.wire = wire
        }
    }

    public func encoded() -> Encoding {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(320 + eventID.utf8.count * 2)
        func key(_ name: StaticString) {
            bytes.append(UInt8(ascii: "\""))
            name.withUTF8Buffer { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        }
        bytes.append(UInt8(ascii: "{"))
        key("content_hash")
        CanonicalJSON.appendString(contentHash, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        key("event_id")
        CanonicalJSON.appendString(eventID, to: &bytes)
        if let parentEventID {
            bytes.append(UInt8(ascii: ","))
            key("parent_event_id")
            CanonicalJSON.appendString(parentEventID, to: &bytes)
        }
        bytes.append(UInt8(ascii: ","))
        key("prev_event_hash")
        if let prevEventHash {
            CanonicalJSON.appendString(prevEventHash, to: &bytes)
        } else {
            bytes.append(contentsOf: "null".utf8)
        }
        bytes.append(UInt8(ascii: ","))
        key("room_id")
        CanonicalJSON.appendString(roomID, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        key("sender_id")
        CanonicalJSON.appendString(senderID, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        key("sender_key")
        CanonicalJSON.appendString(senderKey, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        key("seq")
        CanonicalJSON.appendInteger(seq, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        let signatureStart = bytes.count
        key("signature")
        CanonicalJSON.appendString(signature, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        let signatureEnd = bytes.count
        key("timestamp_ms")
        CanonicalJSON.appendInteger(timestampMs, to: &bytes)
        bytes.append(UInt8(ascii: ","))
        key("type")
        CanonicalJSON.appendString(type, to: &bytes)
        bytes.append(UInt8(ascii: "}"))
        var contentBytes: [UInt8]?
        if let content {
            var encodedContent: [UInt8] = []
            encodedContent.reserveCapacity(256)
            CanonicalJSON.appendObject(content, to: &encodedContent)
            contentBytes = encodedContent
        }
        return Encoding(envelope: bytes, signatureMember: signatureStart..<signatureEnd, content: contentBytes)
    }

    /// Parses and validates an event, and gets its canonical forms: sliced from the input when the input was
    /// already canonical (the usual case for wire-form events), encoded afresh otherwise.
    public static func parseEncoded(_ bytes: [UInt8], parser: JSONParser = JSONParser()) throws(EventError) -> (Event, Encoding) {
        let document: JSONParser.Document
        do { document = try parser.parseDocument(bytes) } catch { throw EventError(.malformedJSON, "invalid JSON: \(error)") }
        let event = try Event(json: document.value)
        if document.isCanonical, let encoding = Encoding(canonicalWire: bytes, members: document.members) {
            return (event, encoding)
        }
        return (event, event.encoded())
    }

    /// The bytes the signature covers: the prefix, then the canonical event without `content` and `signature`.
    public func signingInput() -> [UInt8] { encoded().signingInput }

    /// The canonical event without `content`: what the event hash covers.
    public func envelopeBytes() -> [UInt8] { encoded().envelope }

    /// The canonical wire form: the whole event, with `content` when present.
    public func wireBytes() -> [UInt8] { encoded().wire }

    /// Lowercase hex SHA-256 of the envelope: the event's integrity identity.
    public func computeHash() -> String {
        Hex.encode(SHA256.hash(data: envelopeBytes()))
    }

    /// Lowercase hex SHA-256 of a content object's canonical form.
    public static func contentHash(of content: JSONObject) -> String {
        Hex.encode(SHA256.hash(data: CanonicalJSON.encode(.object(content))))
    }

    /// This event without its content.
    public func stripped() -> Event {
        var copy = self
        copy.content = nil
        return copy
    }
}

/// An event whose content hash (when content is present) and strict Ed25519 signature have been checked.
public struct VerifiedEvent: Sendable, Equatable {
    public let event: Event
    /// Lowercase hex event hash.
    public let hash: String
    /// The canonical wire form.
    public let wire: [UInt8]
    /// The signing key's raw bytes.
    public let senderKeyBytes: [UInt8]

    /// Checks `event` and returns it verified.
    /// - Throws: ``EventError`` with code `.contentHashMismatch`, `.badSignature` or `.tooLarge`.
    public init(verifying event: Event) throws(EventError) {
        try self.init(verifying: event, encoding: event.encoded())
    }

    init(verifying event: Event, encoding: Event.Encoding) throws(EventError) {
        let wire = encoding.wire
        guard wire.count <= Event.maxWireBytes else {
            throw EventError(.tooLarge, "event is \(wire.count) bytes in canonical form, above the limit of \(Event.maxWireBytes)")
        }
        if let content = encoding.content, !Hex.matches(event.contentHash, SHA256.hash(data: content)) {
            throw EventError(.contentHashMismatch, "content does not match content_hash")
        }
        // Both decode: Event's initializer checked them.
        let key = Base64.decode(event.senderKey) ?? []
        let signature = Base64.decode(event.signature) ?? []
        do {
            try StrictEd25519.verify(signature: signature, message: encoding.signingInput, publicKey: key)
        } catch {
            throw EventError(.badSignature, "signature rejected: \(error)")
        }
        self.event = event
        self.hash = Hex.encode(SHA256.hash(data: encoding.envelope))
        self.wire = wire
        self.senderKeyBytes = key
    }

    /// Parses and verifies one wire-form event.
    public init(parsing bytes: some Collection<UInt8>, parser: JSONParser = JSONParser()) throws(EventError) {
        let (event, encoding) = try Event.parseEncoded(Array(bytes), parser: parser)
        try self.init(verifying: event, encoding: encoding)
    }

    /// Re-reads an event this node verified before (from its own store), without checking the signature again.
    ///
    /// Only for bytes that never left this node's control since they were verified; anything received goes
    /// through ``init(parsing:parser:)``.
    public init(storedWire bytes: some Collection<UInt8>) throws(EventError) {
        let (event, encoding) = try Event.parseEncoded(Array(bytes))
        self.init(
            event: event, hash: Hex.encode(SHA256.hash(data: encoding.envelope)), wire: encoding.wire,
            senderKeyBytes: Base64.decode(event.senderKey) ?? [])
    }

    /// Parses, checks the content hash and size, and computes the hash, leaving the signature for
    /// ``StrictEd25519``: what ingest does before verifying, measured on its own by the benchmarks.
    public static func canonicalizeAndHash(_ bytes: [UInt8]) throws(EventError) -> (event: Event, hash: String, wire: [UInt8]) {
        let (event, encoding) = try Event.parseEncoded(bytes)
        if let content = encoding.content, !Hex.matches(event.contentHash, SHA256.hash(data: content)) {
            throw EventError(.contentHashMismatch, "content does not match content_hash")
        }
        return (event, Hex.encode(SHA256.hash(data: encoding.envelope)), encoding.wire)
    }

    /// The same event with its content removed; the hash is unchanged.
    public func stripped() -> VerifiedEvent {
        VerifiedEvent(event: event.stripped(), hash: hash, wire: event.stripped().wireBytes(), senderKeyBytes: senderKeyBytes)
    }

    /// For events this process just signed or already verified: skips the signature check.
    init(event: Event, hash: String, wire: [UInt8], senderKeyBytes: [UInt8]) {
        self.event = event
        self.hash = hash
        self.wire = wire
        self.senderKeyBytes = senderKeyBytes
    }

    /// Attaches `content` to a stripped event, if it matches the content hash.
    public func withContent(_ content: JSONObject) throws(EventError) -> VerifiedEvent {
        guard Event.contentHash(of: content) == event.contentHash else {
            throw EventError(.contentHashMismatch, "content does not match content_hash")
        }
        var copy = event
        copy.content = content
        return VerifiedEvent(event: copy, hash: hash, wire: copy.wireBytes(), senderKeyBytes: senderKeyBytes)
    }
}

/// A device's Ed25519 signing key, able to sign events.
public struct DeviceSigningKey: Sendable {
    public let privateKey: Curve25519.Signing.PrivateKey

    public init(_ privateKey: Curve25519.Signing.PrivateKey) {
        self.privateKey = privateKey
    }

    /// Restores a key from its 32-byte seed.
    public init(seed: [UInt8]) throws {
        privateKey = try Curve25519.Signing.PrivateKey(rawRepresentation: seed)
    }

    public var publicKeyBytes: [UInt8] { Array(privateKey.publicKey.rawRepresentation) }
    public var publicKeyBase64: String { Base64.encode(publicKeyBytes) }

    /// Signs arbitrary bytes; callers add their own domain-separation prefix.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        // Signing with a valid key cannot fail.
        Array(try! privateKey.signature(for: message))
    }

    /// Signs a new event.
    /// - Parameters:
    ///   - seq: the next position in this device's chain in the room.
    ///   - previousHash: the hash of this device's event at `seq - 1`, `nil` for seq 1.
    public func signEvent(
        roomID: String, type: String, content: JSONObject, parentEventID: String? = nil, senderID: String, seq: Int64,
        previousHash: String?, timestampMs: Int64, eventID: String
    ) -> VerifiedEvent {
        var event = Event(
            eventID: eventID, roomID: roomID, timestampMs: timestampMs, senderID: senderID, senderKey: publicKeyBase64,
            seq: seq, type: type, parentEventID: parentEventID, prevEventHash: previousHash, content: content,
            contentHash: Event.contentHash(of: content), signature: "")
        event.signature = Base64.encode(sign(event.signingInput()))
        // Our own signature over what we just built: verifying it again would only double the cost of sending.
        let encoding = event.encoded()
        return VerifiedEvent(event: event, hash: Hex.encode(SHA256.hash(data: encoding.envelope)), wire: encoding.wire, senderKeyBytes: publicKeyBytes)
    }
}
