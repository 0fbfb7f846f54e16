/// Grammars of the identifiers that appear in events, file names and local paths (docs/PROTOCOL.md §3).
///
/// Room, user and client ids share one grammar, `[a-z0-9._=-]{1,64}`, with no leading `.` and no `..`, so none
/// can escape a directory or object-key prefix and none differ only by case (case-insensitive file systems).
public enum Identifier {
    public enum Kind: String, Sendable {
        case room = "room id"
        case user = "user id"
        case client = "client id"
    }

    public static let maxLength = 64

    /// `nil` when `text` is a valid identifier, otherwise why not.
    public static func problem(with text: String, kind: Kind) -> String? {
        var copy = text
        return copy.withUTF8 { utf8 -> String? in
            if utf8.isEmpty { return "\(kind.rawValue) is empty" }
            if utf8.count > maxLength { return "\(kind.rawValue) is longer than \(maxLength) characters" }
            var previous: UInt8 = 0
            for byte in utf8 {
                guard isAllowed(byte) else {
                    return "\(kind.rawValue) \"\(printable(text))\" contains \(describe(byte)); allowed are a-z 0-9 . _ = -"
                }
                if byte == UInt8(ascii: ".") && previous == UInt8(ascii: ".") { return "\(kind.rawValue) \"\(text)\" contains '..'" }
                previous = byte
            }
            if utf8[0] == UInt8(ascii: ".") { return "\(kind.rawValue) \"\(text)\" starts with '.'" }
            return nil
        }
    }

    static func isAllowed(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "="), UInt8(ascii: "-"):
            true
        default: false
        }
    }

    static func describe(_ byte: UInt8) -> String {
        switch byte {
        case 0: "NUL"
        case UInt8(ascii: "/"): "'/'"
        case UInt8(ascii: "\\"): "'\\'"
        case 0x21..<0x7F: "'\(Character(Unicode.Scalar(byte)))'"
        default: "byte 0x\(String(byte, radix: 16))"
        }
    }

    /// `text` with control characters replaced, safe to put in a message.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(80).map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}

/// Event types are lowercase dotted names such as `m.room.message`: `[a-z][a-z0-9._]{0,127}`.
public enum EventTypeName {
    public static func problem(with text: String) -> String? {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count <= 128 else { return "event type must be 1 to 128 characters" }
        guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(utf8[0]) else {
            return "event type \"\(Identifier.printable(text))\" must start with a lowercase letter"
        }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."),
                UInt8(ascii: "_"):
                continue
            default: return "event type \"\(Identifier.printable(text))\" contains \(Identifier.describe(byte))"
            }
        }
        return nil
    }
}

/// Event ids: `{room_id}::{YYYYMMDDTHHMMSS.mmmZ}::{uuid4}` (seed 000), the time being the event's
/// `timestamp_ms` in UTC and the UUID lowercase, version 4, RFC 4122 variant.
public enum EventID {
    /// The latest timestamp an event may carry: 9999-12-31T23:59:59.999Z, so the id keeps four year digits.
    public static let maxTimestampMs: Int64 = 253_402_300_799_999

    /// Builds the id of an event in `roomID` at `timestampMs`, with a UUID made from 16 random bytes.
    public static func make(roomID: String, timestampMs: Int64, randomBytes: [UInt8]) -> String {
        precondition(randomBytes.count == 16, "a UUID needs 16 random bytes")
        var bytes = randomBytes
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        // Written as bytes: every send makes one, and string interpolation cost a tenth of signing.
        var text: [UInt8] = []
        text.reserveCapacity(roomID.utf8.count + 60)
        text.append(contentsOf: roomID.utf8)
        text.append(contentsOf: "::".utf8)
        appendTimestamp(timestampMs, to: &text)
        text.append(contentsOf: "::".utf8)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(Hex.digit(byte >> 4))
            text.append(Hex.digit(byte & 0x0F))
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Builds an event id using `generator` for the UUID.
    public static func make(roomID: String, timestampMs: Int64, using generator: inout some RandomNumberGenerator) -> String {
        make(roomID: roomID, timestampMs: timestampMs, randomBytes: ParleyCore.randomBytes(16, using: &generator))
    }

    /// The time an event id names (for a verified event: its `timestamp_ms`), or `nil` if the id is malformed.
    public static func timestampMs(of eventID: String) -> Int64? {
        var id = eventID
        return id.withUTF8 { bytes -> Int64? in
            guard let separator = bytes.firstIndex(of: UInt8(ascii: ":")), bytes.count == separator + 24 + 36 else { return nil }
            return parseTimestamp(UnsafeBufferPointer(rebasing: bytes[separator + 2..<separator + 22]))
        }
    }

    /// `nil` when `eventID` is a well-formed id; otherwise why not. With `roomID` and `timestampMs`, also checks
    /// that the id names that room and time.
    public static func problem(with eventID: String, roomID: String? = nil, timestampMs: Int64? = nil) -> String? {
        var id = eventID
        return id.withUTF8 { bytes -> String? in
            // ROOM "::" 20-character time "::" 36-character UUID; ROOM has no ':'.
            guard let separator = bytes.firstIndex(of: UInt8(ascii: ":")), bytes.count == separator + 24 + 36,
                bytes[separator + 1] == UInt8(ascii: ":"), bytes[separator + 22] == UInt8(ascii: ":"),
                bytes[separator + 23] == UInt8(ascii: ":")
            else { return "event id \"\(Identifier.printable(eventID))\" is not of the form ROOM::YYYYMMDDTHHMMSS.mmmZ::UUID" }
            let room = UnsafeBufferPointer(rebasing: bytes[0..<separator])
            if var roomID, !roomID.withUTF8({ JSONObject.compareUTF8($0, room) == 0 }) {
                return "event id names room \"\(Identifier.printable(String(decoding: room, as: UTF8.self)))\", but the event is in \"\(roomID)\""
            }
            // A room id the caller passed was validated already; otherwise check the one in the id.
            if roomID == nil, let problem = Identifier.problem(with: String(decoding: room, as: UTF8.self), kind: .room) {
                return "event id: \(problem)"
            }
            guard let time = parseTimestamp(UnsafeBufferPointer(rebasing: bytes[separator + 2..<separator + 22])) else {
                return "event id \"\(Identifier.printable(eventID))\" has no valid YYYYMMDDTHHMMSS.mmmZ time"
            }
            guard isUUID4(UnsafeBufferPointer(rebasing: bytes[separator + 24..<bytes.count])) else {
                return "event id \"\(Identifier.printable(eventID))\" does not end in a lowercase version-4 UUID"
            }
            if let timestampMs, time != timestampMs {
                return "event id time \(String(decoding: bytes[separator + 2..<separator + 22], as: UTF8.self)) does not match timestamp_ms \(timestampMs)"
            }
            return nil
        }
    }

    static func isUUID4(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard bytes.count == 36 else { return false }
        guard bytes[8] == UInt8(ascii: "-"), bytes[13] == UInt8(ascii: "-"), bytes[18] == UInt8(ascii: "-"), bytes[23] == UInt8(ascii: "-")
        else { return false }
        // The four groups of hex digits, without a branch per character.
        var invalid: UInt8 = 0
        for index in 0..<36 where index != 8 && index != 13 && index != 18 && index != 23 {
            let byte = bytes[index]
            let notDigit: UInt8 = byte &- UInt8(ascii: "0") > 9 ? 1 : 0
            let notLetter: UInt8 = byte &- UInt8(ascii: "a") > 5 ? 1 : 0
            invalid |= notDigit & notLetter
        }
        guard invalid == 0 else { return false }
        let variant = bytes[19]
        return bytes[14] == UInt8(ascii: "4")
            && (variant == UInt8(ascii: "8") || variant == UInt8(ascii: "9") || variant == UInt8(ascii: "a") || variant == UInt8(ascii: "b"))
    }

    /// `YYYYMMDDTHHMMSS.mmmZ` of a Unix time in milliseconds, UTC, proleptic Gregorian calendar.
    public static func formatTimestamp(_ timestampMs: Int64) -> String {
        var text: [UInt8] = []
        appendTimestamp(timestampMs, to: &text)
        return String(decoding: text, as: UTF8.self)
    }

    static func appendTimestamp(_ timestampMs: Int64, to text: inout [UInt8]) {
        precondition(timestampMs >= 0 && timestampMs <= maxTimestampMs, "timestamp out of range")
        let days = timestampMs / 86_400_000
        let milliseconds = timestampMs % 86_400_000
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        func pad(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                text.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
        pad(year, 4)
        pad(month, 2)
        pad(day, 2)
        text.append(UInt8(ascii: "T"))
        pad(milliseconds / 3_600_000, 2)
        pad(milliseconds / 60_000 % 60, 2)
        pad(milliseconds / 1000 % 60, 2)
        text.append(UInt8(ascii: "."))
        pad(milliseconds % 1000, 3)
        text.append(UInt8(ascii: "Z"))
    }

    /// The Unix time in milliseconds of a `YYYYMMDDTHHMMSS.mmmZ` string, or `nil` if it is not a valid time.
    public static func parseTimestamp(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parseTimestamp($0) }
    }

    static func parseTimestamp(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard bytes.count == 20, bytes[8] == UInt8(ascii: "T"), bytes[15] == UInt8(ascii: "."), bytes[19] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for index in range {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit < 10 else { return nil }
                value = value * 10 + Int64(digit)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8), let hour = number(9..<11),
            let minute = number(11..<13), let second = number(13..<15), let millisecond = number(16..<19),
            year >= 1970, (1...12).contains(month), hour < 24, minute < 60, second < 60
        else { return nil }
        guard day >= 1, day <= daysInMonth(year: year, month: month) else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        return days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + millisecond
    }

    static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    // Days from civil and back: the standard era-based algorithm for the proleptic Gregorian calendar.
    static func daysSinceEpoch(year: Int64, month: Int64, day: Int64) -> Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilDate(daysSinceEpoch days: Int64) -> (Int64, Int64, Int64) {
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }
}
