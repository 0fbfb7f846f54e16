/// Standard base64 with padding (RFC 4648 §4), decoded strictly: one accepted spelling per byte string.
///
/// Rejects the URL-safe alphabet, missing or extra padding, whitespace, and non-zero unused bits in the last
/// character (which would let two different strings stand for the same key or signature).
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// The padded base64 text of `bytes`.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let input = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity((input.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= input.count {
            let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(alphabet[Int(chunk >> 6 & 0x3F)])
            output.append(alphabet[Int(chunk & 0x3F)])
            index += 3
        }
        let remaining = input.count - index
        if remaining == 1 {
            let chunk = UInt32(input[index]) << 16
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "=")])
        } else if remaining == 2 {
            let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8
            output.append(alphabet[Int(chunk >> 18 & 0x3F)])
            output.append(alphabet[Int(chunk >> 12 & 0x3F)])
            output.append(alphabet[Int(chunk >> 6 & 0x3F)])
            output.append(UInt8(ascii: "="))
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Whether `text` is canonical padded base64 of exactly `byteCount` bytes, without decoding it.
    public static func isCanonical(_ text: String, byteCount: Int) -> Bool {
        var text = text
        return text.withUTF8 { input in
            let padding = (3 - byteCount % 3) % 3
            guard input.count == (byteCount + 2) / 3 * 4 else { return false }
            let dataCount = input.count - padding
            for index in 0..<dataCount where decodeTable[Int(input[index])] == 0xFF { return false }
            for index in dataCount..<input.count where input[index] != UInt8(ascii: "=") { return false }
            guard padding > 0 else { return true }
            // The unused low bits of the last data character must be zero.
            let last = decodeTable[Int(input[dataCount - 1])]
            return padding == 1 ? last & 0x03 == 0 : last & 0x0F == 0
        }
    }

    /// The bytes `text` stands for, or `nil` if it is not canonical padded base64.
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { input -> [UInt8]? in
            guard input.count % 4 == 0 else { return nil }
            var output: [UInt8] = []
            output.reserveCapacity(input.count / 4 * 3)
            var index = 0
            while index < input.count {
                let isLast = index + 4 == input.count
                var chunk: UInt32 = 0
                var padding = 0
                for offset in 0..<4 {
                    let byte = input[index + offset]
                    if byte == UInt8(ascii: "=") {
                        // Padding only at the end of the last quantum, and at most two.
                        guard isLast, offset >= 2 else { return nil }
                        padding += 1
                        chunk <<= 6
                        continue
                    }
                    guard padding == 0 else { return nil }
                    let value = decodeTable[Int(byte)]
                    guard value != 0xFF else { return nil }
                    chunk = chunk << 6 | UInt32(value)
                }
                switch padding {
                case 0:
                    output.append(UInt8(chunk >> 16 & 0xFF))
                    output.append(UInt8(chunk >> 8 & 0xFF))
                    output.append(UInt8(chunk & 0xFF))
                case 1:
                    guard chunk & 0xFF == 0 else { return nil }
                    output.append(UInt8(chunk >> 16 & 0xFF))
                    output.append(UInt8(chunk >> 8 & 0xFF))
                default:
                    guard chunk & 0xFFFF == 0 else { return nil }
                    output.append(UInt8(chunk >> 16 & 0xFF))
                }
                index += 4
            }
            return output
        }
    }
}

/// Lowercase hexadecimal, the encoding of every hash in the protocol.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(64)
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Whether lowercase hex `text` spells exactly `bytes`, without building a string.
    public static func matches(_ text: String, _ bytes: some Sequence<UInt8>) -> Bool {
        var text = text
        return text.withUTF8 { hex in
            var index = 0
            for byte in bytes {
                guard index + 1 < hex.count, hex[index] == digits[Int(byte >> 4)], hex[index + 1] == digits[Int(byte & 0x0F)] else {
                    return false
                }
                index += 2
            }
            return index == hex.count
        }
    }

    /// The bytes of lowercase hex `text`, or `nil` for odd length, uppercase or other characters.
    public static func decode(_ text: String) -> [UInt8]? {
        let input = Array(text.utf8)
        guard input.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 2)
        var index = 0
        while index < input.count {
            guard let high = value(input[index]), let low = value(input[index + 1]) else { return nil }
            output.append(high << 4 | low)
            index += 2
        }
        return output
    }

    /// Whether `text` is exactly `byteCount` bytes of lowercase hex.
    public static func isLowercaseHex(_ text: String, byteCount: Int) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard bytes.count == byteCount * 2 else { return false }
            for byte in bytes where !((byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))) {
                return false
            }
            return true
        }
    }

    private static func value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}
