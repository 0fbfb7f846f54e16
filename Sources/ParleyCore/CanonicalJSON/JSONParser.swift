/// Why a byte sequence is not acceptable JSON for Parley, and where.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        case tooLarge = "too_large"
        case tooDeep = "too_deep"
        case unexpectedEnd = "unexpected_end"
        case unexpectedCharacter = "unexpected_character"
        case trailingContent = "trailing_content"
        case invalidUTF8 = "invalid_utf8"
        case loneSurrogate = "lone_surrogate"
        case invalidEscape = "invalid_escape"
        case controlCharacter = "control_character"
        case notInteger = "not_integer"
        case negativeZero = "negative_zero"
        case integerOutOfRange = "integer_out_of_range"
        case duplicateKey = "duplicate_key"
        case keyOutsideBMP = "key_outside_bmp"
    }

    public var code: Code
    /// Byte offset in the input where the problem was found.
    public var offset: Int
    public var message: String

    public var description: String { "\(message) (at byte \(offset))" }
}

/// A strict, bounded JSON parser: RFC 8259 grammar, plus Parley's restrictions (see docs/PROTOCOL.md §2).
///
/// It rejects duplicate keys, numbers that are not integers within ±(2^53−1), `-0`, invalid UTF-8, lone
/// surrogates, keys with characters above U+FFFF, nesting beyond `maxDepth`, input beyond `maxBytes` and
/// anything but whitespace after the value. Memory use is bounded by the input size.
public struct JSONParser: Sendable {
    /// Deepest nesting of arrays and objects accepted; the outermost value is depth 1.
    public var maxDepth: Int
    /// Largest input accepted, in bytes.
    public var maxBytes: Int
    /// Whether object keys must stay within the Basic Multilingual Plane, as the canonical form requires. Off only
    /// for reading JSON that is not protocol data (the CLI's reports, whose reaction keys are emoji).
    public var keysWithinBMP: Bool

    /// Defaults fit one event: 64 KiB canonical form, with room for whitespace in hand-written input.
    public init(maxDepth: Int = 32, maxBytes: Int = 1 << 20, keysWithinBMP: Bool = true) {
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
        self.keysWithinBMP = keysWithinBMP
    }

    /// Parses exactly one JSON value from `bytes`.
    /// - Throws: ``JSONError`` naming the first problem and its byte offset.
    public func parse(_ bytes: some Collection<UInt8>) throws(JSONError) -> JSONValue {
        if let result = bytes.withContiguousStorageIfAvailable({ buffer in
            Result { () throws(JSONError) -> JSONValue in try parse(buffer: buffer) }
        }) {
            return try result.get()
        }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { buffer throws(JSONError) in try parse(buffer: buffer) }
    }

    /// A parsed value, with what the parser learned about the input's form on the way.
    public struct Document: Sendable {
        public var value: JSONValue
        /// Whether the input was already exactly the canonical form of `value` (no whitespace, keys in order, only
        /// canonical escapes), so its bytes can be hashed as they are.
        public var isCanonical: Bool
        /// For a top-level object: each member's key, the offset of the key's opening quote, and the byte range of
        /// its value, in input order.
        public var members: [(key: String, keyStart: Int, value: Range<Int>)]
    }

    /// Parses exactly one JSON value and reports whether the input was canonical, and where the top-level members
    /// are.
    public func parseDocument(_ bytes: [UInt8]) throws(JSONError) -> Document {
        try bytes.withUnsafeBufferPointer { buffer throws(JSONError) in
            var reader = try reader(for: buffer)
            let value = try finish(&reader)
            return Document(value: value, isCanonical: reader.canonical, members: reader.topMembers)
        }
    }

    /// Parses exactly one JSON value from the UTF-8 of `text`.
    public func parse(_ text: String) throws(JSONError) -> JSONValue {
        try parse(Array(text.utf8))
    }

    private func parse(buffer: UnsafeBufferPointer<UInt8>) throws(JSONError) -> JSONValue {
        var reader = try reader(for: buffer)
        return try finish(&reader)
    }

    private func reader(for buffer: UnsafeBufferPointer<UInt8>) throws(JSONError) -> Reader {
        guard buffer.count <= maxBytes else {
            throw JSONError(
                code: .tooLarge, offset: maxBytes,
                message: "JSON input of \(buffer.count) bytes is larger than the limit of \(maxBytes) bytes")
        }
        return Reader(bytes: buffer, maxDepth: maxDepth, keysWithinBMP: keysWithinBMP)
    }

    private func finish(_ reader: inout Reader) throws(JSONError) -> JSONValue {
        reader.skipWhitespace()
        let value = try reader.parseValue(depth: 1)
        reader.skipWhitespace()
        if reader.position < reader.bytes.count {
            throw reader.error(.trailingContent, "unexpected content after the JSON value")
        }
        return value
    }
}

extension Result where Failure == JSONError {
    fileprivate init(catching body: () throws(JSONError) -> Success) {
        do { self = .success(try body()) } catch { self = .failure(error) }
    }
}

private struct Reader {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    let keysWithinBMP: Bool
    var position = 0
    /// Cleared as soon as the input shows anything the canonical form would write differently.
    var canonical = true
    var topMembers: [(key: String, keyStart: Int, value: Range<Int>)] = []
    /// Reused for strings that contain escapes.
    var scratch: [UInt8] = []

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, keysWithinBMP: Bool) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.keysWithinBMP = keysWithinBMP
    }

    func error(_ code: JSONError.Code, _ message: String, at offset: Int? = nil) -> JSONError {
        JSONError(code: code, offset: offset ?? position, message: message)
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D:
                position += 1
                canonical = false
            default: return
            }
        }
    }

    func describeByte(at offset: Int) -> String {
        let byte = bytes[offset]
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x" + String(byte, radix: 16, uppercase: false)
    }

    mutating func parseValue(depth: Int) throws(JSONError) -> JSONValue {
        guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends where a value was expected") }
        switch bytes[position] {
        case UInt8(ascii: "{"): return .object(try parseObject(depth: depth))
        case UInt8(ascii: "["): return .array(try parseArray(depth: depth))
        case UInt8(ascii: "\""): return .string(try parseString(isKey: false))
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .integer(try parseInteger())
        default: throw error(.unexpectedCharacter, "unexpected \(describeByte(at: position)) where a value was expected")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let start = position
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else {
            throw error(.unexpectedEnd, "JSON ends inside the literal \(literal)", at: start)
        }
        let matches = literal.withUTF8Buffer { expected in
            for index in 0..<count where bytes[position + index] != expected[index] { return false }
            return true
        }
        guard matches else { throw error(.unexpectedCharacter, "expected the literal \(literal)", at: start) }
        position += count
    }

    mutating func enter(_ depth: Int) throws(JSONError) {
        if depth > maxDepth {
            throw error(.tooDeep, "JSON nests deeper than the limit of \(maxDepth) levels")
        }
    }

    mutating func parseArray(depth: Int) throws(JSONError) -> [JSONValue] {
        try enter(depth)
        position += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
            position += 1
            return elements
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside an array") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"):
                position += 1
                return elements
            default: throw error(.unexpectedCharacter, "expected ',' or ']' in an array, found \(describeByte(at: position))")
            }
        }
    }

    mutating func parseObject(depth: Int) throws(JSONError) -> JSONObject {
        try enter(depth)
        position += 1
        var members: [JSONObject.Member] = []
        var sorted = true
        skipWhitespace()
        if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
            position += 1
            return JSONObject()
        }
        var keyOffsets: [Int] = []
        // Room for the members of a typical content object at once, rather than growing one, two, four. Not more:
        // a document of many one-member objects would hold the unused room of each.
        members.reserveCapacity(4)
        keyOffsets.reserveCapacity(4)
        while true {
            skipWhitespace()
            guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside an object") }
            guard bytes[position] == UInt8(ascii: "\"") else {
                throw error(.unexpectedCharacter, "expected a string key in an object, found \(describeByte(at: position))")
            }
            let keyOffset = position
            let key = try parseString(isKey: keysWithinBMP)
            skipWhitespace()
            guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside an object") }
            guard bytes[position] == UInt8(ascii: ":") else {
                throw error(.unexpectedCharacter, "expected ':' after an object key, found \(describeByte(at: position))")
            }
            position += 1
            skipWhitespace()
            let valueStart = position
            let value = try parseValue(depth: depth + 1)
            if depth == 1 {
                // An event has twelve or thirteen members: room for them at once rather than five regrowths.
                if topMembers.isEmpty { topMembers.reserveCapacity(16) }
                topMembers.append((key, keyOffset, valueStart..<position))
            }
            if let last = members.last {
                let order = JSONObject.compareUTF8(last.key, key)
                if order == 0 { throw duplicateKey(key, at: keyOffset) }
                if order > 0 { sorted = false }
            }
            members.append(JSONObject.Member(key: key, value: value))
            keyOffsets.append(keyOffset)
            skipWhitespace()
            guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside an object") }
            switch bytes[position] {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"):
                position += 1
                if sorted { return JSONObject(sortedUniqueMembers: members) }
                canonical = false
                return try sortChecked(members, keyOffsets: keyOffsets)
            default: throw error(.unexpectedCharacter, "expected ',' or '}' in an object, found \(describeByte(at: position))")
            }
        }
    }

    func duplicateKey(_ key: String, at offset: Int) -> JSONError {
        error(.duplicateKey, "duplicate object key \"\(key.prefix(64))\"", at: offset)
    }

    func sortChecked(_ members: [JSONObject.Member], keyOffsets: [Int]) throws(JSONError) -> JSONObject {
        let order = members.indices.sorted { JSONObject.compareUTF8(members[$0].key, members[$1].key) < 0 }
        for (previous, next) in zip(order, order.dropFirst())
        where JSONObject.compareUTF8(members[previous].key, members[next].key) == 0 {
            throw duplicateKey(members[next].key, at: keyOffsets[max(previous, next)])
        }
        return JSONObject(sortedUniqueMembers: order.map { members[$0] })
    }

    mutating func parseInteger() throws(JSONError) -> Int64 {
        let start = position
        var negative = false
        if bytes[position] == UInt8(ascii: "-") {
            negative = true
            position += 1
        }
        guard position < bytes.count, isDigit(bytes[position]) else {
            throw error(.unexpectedCharacter, "expected a digit in a number", at: position)
        }
        var magnitude: Int64 = 0
        var digits = 0
        let firstDigit = position
        while position < bytes.count, isDigit(bytes[position]) {
            if digits < 17 { magnitude = magnitude * 10 + Int64(bytes[position] - UInt8(ascii: "0")) }
            digits += 1
            position += 1
        }
        if position < bytes.count {
            switch bytes[position] {
            case UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
                throw error(.notInteger, "numbers must be integers: fractions and exponents are not allowed", at: start)
            default: break
            }
        }
        if digits > 1 && bytes[firstDigit] == UInt8(ascii: "0") {
            throw error(.unexpectedCharacter, "numbers must not have leading zeros", at: start)
        }
        if digits > 16 || magnitude > JSONValue.maxSafeInteger {
            throw error(.integerOutOfRange, "integer is outside ±(2^53−1)", at: start)
        }
        if negative && magnitude == 0 { throw error(.negativeZero, "-0 is not allowed", at: start) }
        return negative ? -magnitude : magnitude
    }

    func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    /// Parses a string starting at its opening quote. Validates UTF-8 as it goes; copies only when it meets
    /// an escape.
    mutating func parseString(isKey: Bool) throws(JSONError) -> String {
        position += 1
        let start = position
        var hasEscapes = false
        while true {
            // Fast path: plain ASCII needs no checks beyond these.
            if !hasEscapes { position = PlainRun.end(in: bytes, from: position) }
            guard position < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside a string", at: start - 1) }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let end = position
                position += 1
                if hasEscapes { return String(decoding: scratch, as: UTF8.self) }
                return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
            }
            if byte == UInt8(ascii: "\\") {
                if !hasEscapes {
                    hasEscapes = true
                    // Cleared only here: most strings have no escape and never touch it.
                    scratch.removeAll(keepingCapacity: true)
                    scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<position]))
                }
                try parseEscape(isKey: isKey)
                continue
            }
            if byte < 0x20 {
                throw error(.controlCharacter, "control character 0x\(String(byte, radix: 16)) must be escaped in a string")
            }
            if byte < 0x80 {
                if hasEscapes { scratch.append(byte) }
                position += 1
                continue
            }
            let length = try validateMultibyte(isKey: isKey)
            if hasEscapes { scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[position..<position + length])) }
            position += length
        }
    }

    /// Validates one multi-byte UTF-8 sequence at `position` (RFC 3629: no overlong forms, no surrogates, nothing
    /// above U+10FFFF) and returns its length.
    func validateMultibyte(isKey: Bool) throws(JSONError) -> Int {
        let lead = bytes[position]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            high = 0x9F  // U+D800...U+DFFF are surrogates, not characters
        case 0xF0:
            length = 4
            low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            high = 0x8F
        default: throw error(.invalidUTF8, "invalid UTF-8 lead byte 0x\(String(lead, radix: 16))")
        }
        guard bytes.count - position >= length else {
            throw error(.invalidUTF8, "truncated UTF-8 sequence")
        }
        let second = bytes[position + 1]
        guard second >= low && second <= high else { throw error(.invalidUTF8, "invalid UTF-8 sequence") }
        for index in 2..<max(2, length) where bytes[position + index] & 0xC0 != 0x80 {
            throw error(.invalidUTF8, "invalid UTF-8 continuation byte")
        }
        if isKey && length == 4 {
            throw error(.keyOutsideBMP, "object keys must not contain characters above U+FFFF")
        }
        return length
    }

    mutating func parseEscape(isKey: Bool) throws(JSONError) {
        let escapeStart = position
        guard position + 1 < bytes.count else { throw error(.unexpectedEnd, "JSON ends inside an escape") }
        let code = bytes[position + 1]
        position += 2
        switch code {
        case UInt8(ascii: "\""): scratch.append(0x22)
        case UInt8(ascii: "\\"): scratch.append(0x5C)
        case UInt8(ascii: "/"):
            scratch.append(0x2F)
            canonical = false
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try readHex4(escapeStart: escapeStart)
            // The canonical form spells only control characters without a short escape this way, in lowercase.
            let hasShortEscape = unit == 0x08 || unit == 0x09 || unit == 0x0A || unit == 0x0C || unit == 0x0D
            let hexIsLowercase = !bytes[escapeStart + 2..<escapeStart + 6].contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "F") }
            if unit >= 0x20 || hasShortEscape || !hexIsLowercase { canonical = false }
            var scalarValue = UInt32(unit)
            if unit >= 0xDC00 && unit <= 0xDFFF {
                throw error(.loneSurrogate, "lone low surrogate \\u\(hex4(unit)) in a string", at: escapeStart)
            }
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                    bytes[position + 1] == UInt8(ascii: "u")
                else {
                    throw error(.loneSurrogate, "lone high surrogate \\u\(hex4(unit)) in a string", at: escapeStart)
                }
                position += 2
                let low = try readHex4(escapeStart: position - 2)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw error(.loneSurrogate, "high surrogate \\u\(hex4(unit)) is not followed by a low surrogate", at: escapeStart)
                }
                if isKey {
                    throw error(.keyOutsideBMP, "object keys must not contain characters above U+FFFF", at: escapeStart)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            }
            // Cannot fail: surrogates were handled above and the value is at most U+10FFFF.
            let scalar = Unicode.Scalar(scalarValue)!
            scratch.append(contentsOf: UTF8.encode(scalar)!)
        default:
            throw error(.invalidEscape, "invalid escape sequence in a string", at: escapeStart)
        }
    }

    mutating func readHex4(escapeStart: Int) throws(JSONError) -> UInt16 {
        guard bytes.count - position >= 4 else { throw error(.unexpectedEnd, "JSON ends inside a \\u escape", at: escapeStart) }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error(.invalidEscape, "invalid hex digit in a \\u escape", at: escapeStart)
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }

    func hex4(_ value: UInt16) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}
