/// Why a code people pass between devices (an invite code, a device request, a link code) cannot be read
/// (docs/PROTOCOL.md §13.5). The code names the rule broken; the message says where.
public struct CodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The text does not start with the prefix of the kind of code expected.
        case wrongPrefix = "wrong_prefix"
        /// The text is longer than any code of its kind can be.
        case tooLarge = "too_large"
        /// The text after the prefix is not unpadded base64url, or not its only spelling of the bytes.
        case notBase64URL = "not_base64url"
        /// The bytes are not a JSON object (§2).
        case notJSON = "not_json"
        /// `v` is missing, or a version this reader does not know.
        case unsupportedVersion = "unsupported_version"
        /// A member the version requires is missing, of the wrong type, or not valid.
        case invalidMember = "invalid_member"
        /// The list of locations is empty.
        case noLocations = "no_locations"
        /// The list of locations is longer than ``RoomLocation/maxCount``.
        case tooManyLocations = "too_many_locations"
        /// A location is not of the form §13.5.2 gives it.
        case invalidLocation = "invalid_location"
    }

    public var code: Code
    /// What is wrong, naming the member or the location's position.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// The text form of every code people pass between devices: a prefix naming the kind, then unpadded base64url
/// (RFC 4648 §5) of a canonical JSON object, so a code survives being pasted into a shell, a chat or a URL
/// (docs/PROTOCOL.md §13.5.1).
public enum CodeText {
    /// `prefix` followed by unpadded base64url of the canonical JSON of `object`.
    public static func encode(prefix: String, _ object: JSONObject) -> String {
        let base64 = Base64.encode(CanonicalJSON.encode(.object(object)))
        return prefix + String(base64.compactMap { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 == "=" ? nil : $0 })
    }

    /// The object a code carries.
    /// - Parameter maxBytes: the most bytes the kind's object may decode to; longer text is refused before decoding.
    /// - Throws: ``CodeError`` `.wrongPrefix`, `.tooLarge`, `.notBase64URL` or `.notJSON`, in that order of checking.
    public static func decode(prefix: String, _ text: String, maxBytes: Int) throws(CodeError) -> JSONObject {
        guard text.utf8.starts(with: prefix.utf8) else { throw CodeError(.wrongPrefix, "The code does not start with \(prefix)") }
        let body = text.utf8.dropFirst(prefix.utf8.count)
        // Unpadded, n bytes take ⌈4n/3⌉ characters: text within that bound decodes to at most `maxBytes`.
        guard body.count <= (4 * maxBytes + 2) / 3 else {
            throw CodeError(.tooLarge, "The code is longer than a code of its kind can be (\(maxBytes) bytes once decoded).")
        }
        // One spelling per code: the standard alphabet's `+` and `/`, padding and white space are not base64url, and
        // a length of 1 modulo 4 or unused bits that are not zero (which the strict decoder refuses) spell nothing.
        guard body.allSatisfy(isBase64URLSymbol), body.count % 4 != 1 else {
            throw CodeError(.notBase64URL, "The code is not unpadded base64url (A-Z a-z 0-9 - _) after \(prefix)")
        }
        var standard = body.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "+") : $0 == UInt8(ascii: "_") ? UInt8(ascii: "/") : $0 }
        while standard.count % 4 != 0 { standard.append(UInt8(ascii: "=")) }
        guard let bytes = Base64.decode(String(decoding: standard, as: UTF8.self)) else {
            throw CodeError(.notBase64URL, "The code's last character has bits set that base64url leaves zero: it is not the code's only spelling.")
        }
        let value: JSONValue
        do { value = try JSONParser(maxBytes: maxBytes).parse(bytes) } catch {
            throw CodeError(.notJSON, "The code does not hold valid JSON: \(error.message).")
        }
        guard case .object(let object) = value else { throw CodeError(.notJSON, "The code holds a JSON \(value.kindName), not an object.") }
        return object
    }

    private static func isBase64URLSymbol(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"):
            true
        default: false
        }
    }
}
