/// Where a room can be fetched: one entry of the `locations` an invite code or a link code carries
/// (docs/PROTOCOL.md §13.5.2). A location only says where to look: the creator fingerprint beside it decides which room
/// is accepted there.
///
/// JSON form: an object whose `kind` names the transport, `{"kind":"bucket","url":URL}`,
/// `{"kind":"relay","url":URL}` or `{"address":"HOST:PORT","kind":"peer"}`. A kind this version does not know is kept
/// as read (``unknown(kind:_:)``), so later transports can be listed beside the ones a reader uses.
public enum RoomLocation: Sendable, Equatable {
    /// A bucket (§13.6): `file:///absolute/path` or `s3://BUCKET[/PREFIX][?…]`. Only its characters are checked here;
    /// whether this client can use the URL is the bucket layer's to say.
    case bucket(url: String)
    /// A relay: `wss://` or `https://` (`http://` to a loopback host), a host and optional port, and an optional path.
    case relay(url: String)
    /// A device that syncs the room directly: `HOST:PORT`, HOST a DNS name, IPv4 address or bracketed IPv6 address.
    case peer(address: String)
    /// A location of a kind this version does not know: the whole object, as read.
    case unknown(kind: String, JSONObject)

    /// The most locations one room may list.
    public static let maxCount = 16
    /// The largest canonical JSON of one location, in bytes.
    public static let maxBytes = 1024
    /// The longest `kind`, in bytes.
    public static let maxKindLength = 32

    /// The `kind` member: `bucket`, `relay`, `peer`, or the unknown kind as read.
    public var kind: String {
        switch self {
        case .bucket: "bucket"
        case .relay: "relay"
        case .peer: "peer"
        case .unknown(let kind, _): kind
        }
    }

    /// The JSON form. Members a reader did not know in a location of a known kind are not kept.
    public var json: JSONValue {
        switch self {
        case .bucket(let url): ["kind": "bucket", "url": .string(url)]
        case .relay(let url): ["kind": "relay", "url": .string(url)]
        case .peer(let address): ["address": .string(address), "kind": "peer"]
        case .unknown(_, let object): .object(object)
        }
    }

    /// Reads one location and checks its form.
    /// - Throws: ``CodeError`` `.invalidLocation` saying what is wrong.
    public init(json value: JSONValue) throws(CodeError) {
        func invalid(_ why: String) -> CodeError { CodeError(.invalidLocation, why) }
        guard case .object(let object) = value else { throw invalid("It is a JSON \(value.kindName), not an object.") }
        guard CanonicalJSON.encode(value).count <= Self.maxBytes else { throw invalid("It is longer than \(Self.maxBytes) bytes.") }
        guard case .string(let kind)? = object["kind"], Self.isValidKind(kind) else {
            throw invalid("Its kind is not a string of 1 to \(Self.maxKindLength) of a-z 0-9 . _ - starting with a letter.")
        }
        switch kind {
        case "bucket":
            guard case .string(let url)? = object["url"], !url.isEmpty, !url.unicodeScalars.contains(where: Self.isControl) else {
                throw invalid("A bucket location's url is not a string of at least one character without control characters.")
            }
            self = .bucket(url: url)
        case "relay":
            guard case .string(let url)? = object["url"], Self.isRelayURL(url) else {
                throw invalid(
                    "A relay location's url is not wss:// or https:// (or http:// to this machine) followed by a host, an optional port and an optional path.")
            }
            self = .relay(url: url)
        case "peer":
            guard case .string(let address)? = object["address"], Self.isHostAndPort(Substring(address), portRequired: true) else {
                throw invalid("A peer location's address is not HOST:PORT.")
            }
            self = .peer(address: address)
        default:
            self = .unknown(kind: kind, object)
        }
    }

    /// Reads a `locations` member: 1 to ``maxCount`` locations, each of a valid form.
    /// - Throws: ``CodeError`` `.invalidMember` (not an array), `.noLocations`, `.tooManyLocations` or
    ///   `.invalidLocation` (naming the location's position, from 1).
    public static func list(json value: JSONValue?) throws(CodeError) -> [RoomLocation] {
        guard case .array(let entries)? = value else { throw CodeError(.invalidMember, "locations is missing or not an array.") }
        guard !entries.isEmpty else { throw CodeError(.noLocations, "The list of locations is empty.") }
        guard entries.count <= maxCount else {
            throw CodeError(.tooManyLocations, "\(entries.count) locations are listed; at most \(maxCount) may be.")
        }
        var locations: [RoomLocation] = []
        for (index, entry) in entries.enumerated() {
            do { locations.append(try RoomLocation(json: entry)) } catch {
                throw CodeError(error.code, "Location \(index + 1): \(error.message)")
            }
        }
        return locations
    }

    /// Whether `address` is HOST`:`PORT as a peer location's (§13.5.2): a DNS name or IPv4 address, or an IPv6 address in
    /// brackets, and a port from 1 to 65535.
    public static func isPeerAddress(_ address: String) -> Bool { isHostAndPort(Substring(address), portRequired: true) }

    /// `[a-z][a-z0-9._-]{0,31}`.
    static func isValidKind(_ kind: String) -> Bool {
        let bytes = kind.utf8
        guard let first = bytes.first, (1...maxKindLength).contains(bytes.count), (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else {
            return false
        }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default: false
            }
        }
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool { scalar.value < 0x20 || scalar.value == 0x7F }

    /// `wss://` or `https://` (or `http://` to a loopback host), then HOST[:PORT], then nothing or a path or query
    /// starting with `/` or `?`; printable ASCII only, no fragment, and no user information (credentials never travel
    /// in a code).
    static func isRelayURL(_ url: String) -> Bool {
        guard url.utf8.allSatisfy({ (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "#") }) else { return false }
        guard let scheme = ["wss://", "https://", "http://"].first(where: { url.hasPrefix($0) }) else { return false }
        let authority = url.dropFirst(scheme.count).prefix { $0 != "/" && $0 != "?" }
        guard isHostAndPort(authority, portRequired: false) else { return false }
        return scheme != "http://" || isLoopback(authority)
    }

    /// HOST[:PORT] whose host is `localhost`, an IPv4 address in 127.0.0.0/8 or `[::1]`: plain HTTP stays on this
    /// machine.
    static func isLoopback(_ authority: Substring) -> Bool {
        let host = authority.hasPrefix("[") ? authority.prefix { $0 != "]" } + "]" : authority.prefix { $0 != ":" }
        if host == "localhost" || host == "[::1]" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127"
            && parts.allSatisfy { part in !part.isEmpty && part.allSatisfy(\.isASCII) && Int(part).map { $0 <= 255 } == true }
    }

    /// HOST or HOST:PORT (with `portRequired`, only the latter). HOST is 1 to 253 of `a-z A-Z 0-9 . -` (a DNS name or
    /// an IPv4 address) or `[`, 2 to 45 of hex digits `:` and `.`, then `]` (an IPv6 address); PORT is 1 to 65535 in
    /// decimal without leading zeros.
    static func isHostAndPort(_ text: Substring, portRequired: Bool) -> Bool {
        let host: Substring
        let port: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return false }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { return false }
            port = after.isEmpty ? nil : after.dropFirst()
            guard (2...45).contains(host.utf8.count), host.utf8.allSatisfy({ isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") })
            else { return false }
        } else {
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            host = parts[0]
            port = parts.count == 2 ? parts[1] : nil
            guard (1...253).contains(host.utf8.count), host.utf8.allSatisfy({ isLetterOrDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") })
            else { return false }
        }
        guard let port else { return !portRequired }
        guard (1...5).contains(port.utf8.count), port.utf8.first != UInt8(ascii: "0"),
            port.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let number = Int(port), number <= 65535
        else { return false }
        return true
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }
}
