/// A JSON value restricted to what Parley's canonical form can express: no floating-point numbers, integers
/// within ±(2^53−1), object keys compared and ordered by their UTF-8 bytes.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    /// The largest integer magnitude the canonical form allows (2^53−1), so every value survives a round trip
    /// through an IEEE 754 double in other implementations.
    public static let maxSafeInteger: Int64 = 9_007_199_254_740_991

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var integerValue: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// An object's member `key`; `nil` when this is no object or has no such member.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// A short name of the value's kind, for error messages.
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer: "integer"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// A JSON object whose members are kept sorted by the UTF-8 bytes of their keys, with no two keys byte-equal.
///
/// Keys are compared as bytes, never as Swift `String`s: Swift's string equality follows Unicode canonical
/// equivalence, so `"é"` and `"e\u{301}"` would collide in a `Dictionary` although they are distinct JSON keys.
public struct JSONObject: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var key: String
        public var value: JSONValue

        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }

        public static func == (lhs: Member, rhs: Member) -> Bool {
            lhs.key.utf8.elementsEqual(rhs.key.utf8) && lhs.value == rhs.value
        }
    }

    /// The members in canonical order.
    public private(set) var members: [Member]

    public init() {
        members = []
    }

    /// Builds an object from key–value pairs; a later pair replaces an earlier one with the same key.
    public init(_ pairs: KeyValuePairs<String, JSONValue>) {
        members = []
        members.reserveCapacity(pairs.count)
        for (key, value) in pairs { self[key] = value }
    }

    /// Builds an object from members already known to be sorted and unique (the parser's output).
    init(sortedUniqueMembers: [Member]) {
        assert(zip(sortedUniqueMembers, sortedUniqueMembers.dropFirst()).allSatisfy { JSONObject.compareUTF8($0.key, $1.key) < 0 })
        members = sortedUniqueMembers
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }
    public var keys: [String] { members.map(\.key) }

    /// The value for `key`, matched byte for byte; setting `nil` removes the member.
    public subscript(key: String) -> JSONValue? {
        get {
            let (index, found) = position(of: key)
            return found ? members[index].value : nil
        }
        set {
            let (index, found) = position(of: key)
            switch (found, newValue) {
            case (true, let value?): members[index].value = value
            case (true, nil): members.remove(at: index)
            case (false, let value?): members.insert(Member(key: key, value: value), at: index)
            case (false, nil): break
            }
        }
    }

    /// Binary search by UTF-8 bytes: the insertion point and whether the key is already there.
    private func position(of key: String) -> (Int, Bool) {
        var key = key
        // The key's bytes once for the whole search, not once per comparison.
        return key.withUTF8 { needle in
            var low = 0
            var high = members.count
            while low < high {
                let middle = (low + high) / 2
                var candidate = members[middle].key
                let order = candidate.withUTF8 { JSONObject.compareUTF8($0, needle) }
                if order == 0 { return (middle, true) }
                if order < 0 { low = middle + 1 } else { high = middle }
            }
            return (low, false)
        }
    }

    /// Three-way comparison of two strings by their UTF-8 bytes, which for keys without characters above
    /// U+FFFF is also the UTF-16 code unit order RFC 8785 asks for.
    static func compareUTF8(_ lhs: String, _ rhs: String) -> Int {
        var lhs = lhs
        var rhs = rhs
        return lhs.withUTF8 { a in rhs.withUTF8 { b in compareUTF8(a, b) } }
    }

    static func compareUTF8(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let common = min(a.count, b.count)
        var index = 0
        // Eight bytes at a time while they are equal: keys such as "msgtype" and "content" share no prefix,
        // but event ids and device keys used as keys do.
        if let left = a.baseAddress, let right = b.baseAddress {
            while index + 8 <= common
                && UnsafeRawPointer(left + index).loadUnaligned(as: UInt64.self) == UnsafeRawPointer(right + index).loadUnaligned(as: UInt64.self)
            {
                index += 8
            }
        }
        while index < common {
            if a[index] != b[index] { return a[index] < b[index] ? -1 : 1 }
            index += 1
        }
        return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
    }
}

// Not ExpressibleByNilLiteral: inside an Optional, `nil` would then silently become `.null`.
extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}
