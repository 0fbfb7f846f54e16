import Crypto

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

    /// Two symbols per 12 bits, first symbol in the low byte: half the lookups of one symbol per 6 bits.
    private static let symbolPairs: [UInt16] = (0..<4096).map { UInt16(alphabet[$0 >> 6]) | UInt16(alphabet[$0 & 0x3F]) << 8 }

    /// Four tables of 256, one per position in a quantum, each holding a symbol's 6 bits already shifted into
    /// place, so a quantum is four lookups ORed together. A byte that is no symbol maps to all ones, which sets
    /// bit 31 of the result whatever the other three are.
    private static let quantumTable: [UInt32] = (0..<1024).map { entry in
        let value = decodeTable[entry & 0xFF]
        guard value != 0xFF else { return UInt32.max }
        return UInt32(value) << (18 - 6 * UInt32(entry >> 8))
    }

    /// The padded base64 text of `bytes`.
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        if let text = bytes.withContiguousStorageIfAvailable(encode(buffer:)) { return text }
        return Array(bytes).withUnsafeBufferPointer(encode(buffer:))
    }

    private static func encode(buffer input: UnsafeBufferPointer<UInt8>) -> String {
        let length = (input.count + 2) / 3 * 4
        // The tables are read through buffer pointers: touching the globals in the loop costs a lazy-init check each.
        return symbolPairs.withUnsafeBufferPointer { pairs in
            alphabet.withUnsafeBufferPointer { symbols in
                String(unsafeUninitializedCapacity: length) { output in
                    let out = UnsafeMutableRawPointer(output.baseAddress!)
                    var index = 0
                    var offset = 0
                    let source = UnsafeRawPointer(input.baseAddress)
                    // Four bytes read at once while a fourth is there to read; the last three one by one.
                    while index + 4 <= input.count {
                        let chunk = Int(source!.loadUnaligned(fromByteOffset: index, as: UInt32.self).bigEndian >> 8)
                        let symbols = UInt32(pairs[chunk >> 12]) | UInt32(pairs[chunk & 0xFFF]) << 16
                        out.storeBytes(of: symbols.littleEndian, toByteOffset: offset, as: UInt32.self)
                        index += 3
                        offset += 4
                    }
                    if index + 3 <= input.count {
                        let chunk = Int(input[index]) << 16 | Int(input[index + 1]) << 8 | Int(input[index + 2])
                        out.storeBytes(of: pairs[chunk >> 12].littleEndian, toByteOffset: offset, as: UInt16.self)
                        out.storeBytes(of: pairs[chunk & 0xFFF].littleEndian, toByteOffset: offset + 2, as: UInt16.self)
                        index += 3
                        offset += 4
                    }
                    let remaining = input.count - index
                    if remaining > 0 {
                        let chunk = UInt32(input[index]) << 16 | (remaining == 2 ? UInt32(input[index + 1]) << 8 : 0)
                        output[offset] = symbols[Int(chunk >> 18 & 0x3F)]
                        output[offset + 1] = symbols[Int(chunk >> 12 & 0x3F)]
                        output[offset + 2] = remaining == 2 ? symbols[Int(chunk >> 6 & 0x3F)] : UInt8(ascii: "=")
                        output[offset + 3] = UInt8(ascii: "=")
                        offset += 4
                    }
                    return offset
                }
            }
        }
    }

    /// Whether `text` is canonical padded base64 of exactly `byteCount` bytes, without decoding it.
    public static func isCanonical(_ text: String, byteCount: Int) -> Bool {
        var text = text
        // The table through one buffer pointer: reading the global per character costs a lazy-init call each.
        return decodeTable.withUnsafeBufferPointer { table in
            text.withUTF8 { input in
                let padding = (3 - byteCount % 3) % 3
                guard input.count == (byteCount + 2) / 3 * 4 else { return false }
                let dataCount = input.count - padding
                // Non-symbols map to 0xFF, symbols to at most 63: one OR per character and a single test.
                var seen: UInt8 = 0
                for index in 0..<dataCount { seen |= table[Int(input[index])] }
                guard seen & 0xC0 == 0 else { return false }
                for index in dataCount..<input.count where input[index] != UInt8(ascii: "=") { return false }
                guard padding > 0 else { return true }
                // The unused low bits of the last data character must be zero.
                let last = table[Int(input[dataCount - 1])]
                return padding == 1 ? last & 0x03 == 0 : last & 0x0F == 0
            }
        }
    }

    /// The bytes `text` stands for, or `nil` if it is not canonical padded base64.
    public static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return decodeTable.withUnsafeBufferPointer { table in
            quantumTable.withUnsafeBufferPointer { quanta in
                text.withUTF8 { input -> [UInt8]? in
                    guard input.count % 4 == 0 else { return nil }
                    guard input.count > 0 else { return [] }
                    let padding = input[input.count - 1] == UInt8(ascii: "=") ? (input[input.count - 2] == UInt8(ascii: "=") ? 2 : 1) : 0
                    let count = input.count / 4 * 3 - padding
                    var valid = true
                    let output = [UInt8](unsafeUninitializedCapacity: count + 2) { output, initialized in
                        var index = 0
                        var out = 0
                        let source = UnsafeRawPointer(input.baseAddress!)
                        let target = UnsafeMutableRawPointer(output.baseAddress!)
                        // Every quantum but the last has four data characters. Each writes its three bytes with one
                        // four-byte store; the fourth byte is overwritten by the next quantum (or lies in the slack of
                        // two bytes past `count`).
                        while index + 4 < input.count {
                            let word = source.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian
                            let chunk =
                                quanta[Int(word & 0xFF)] | quanta[256 + Int(word >> 8 & 0xFF)]
                                | quanta[512 + Int(word >> 16 & 0xFF)] | quanta[768 + Int(word >> 24)]
                            if chunk & 0x8000_0000 != 0 {
                                valid = false
                                break
                            }
                            target.storeBytes(of: (chunk << 8).bigEndian, toByteOffset: out, as: UInt32.self)
                            index += 4
                            out += 3
                        }
                        if valid {
                            // The last quantum: padding only at its end, at most two, and zero unused bits.
                            var chunk: UInt32 = 0
                            for offset in 0..<4 {
                                let byte = input[index + offset]
                                if offset >= 4 - padding {
                                    guard byte == UInt8(ascii: "=") else {
                                        valid = false
                                        break
                                    }
                                    chunk <<= 6
                                    continue
                                }
                                let value = table[Int(byte)]
                                guard value <= 63 else {
                                    valid = false
                                    break
                                }
                                chunk = chunk << 6 | UInt32(value)
                            }
                            if valid {
                                switch padding {
                                case 0:
                                    output[out] = UInt8(chunk >> 16 & 0xFF)
                                    output[out + 1] = UInt8(chunk >> 8 & 0xFF)
                                    output[out + 2] = UInt8(chunk & 0xFF)
                                case 1:
                                    valid = chunk & 0xFF == 0
                                    output[out] = UInt8(chunk >> 16 & 0xFF)
                                    output[out + 1] = UInt8(chunk >> 8 & 0xFF)
                                default:
                                    valid = chunk & 0xFFFF == 0
                                    output[out] = UInt8(chunk >> 16 & 0xFF)
                                }
                            }
                        }
                        initialized = valid ? count : 0
                    }
                    return valid ? output : nil
                }
            }
        }
    }
}

/// Lowercase hexadecimal, the encoding of every hash in the protocol.
public enum Hex {

    /// Both digits of every byte value, the first in the low byte: one lookup and one store per byte.
    private static let digitPairs: [UInt16] = (0..<256).map { UInt16(digit(UInt8($0 >> 4))) | UInt16(digit(UInt8($0 & 0x0F))) << 8 }

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        if let text = bytes.withContiguousStorageIfAvailable(encode(buffer:)) { return text }
        return Array(bytes).withUnsafeBufferPointer(encode(buffer:))
    }

    /// A digest's bytes are contiguous but not reachable through `Sequence`'s contiguous storage.
    public static func encode(_ digest: some Digest) -> String {
        digest.withUnsafeBytes { encode(buffer: $0.assumingMemoryBound(to: UInt8.self)) }
    }

    private static func encode(buffer input: UnsafeBufferPointer<UInt8>) -> String {
        digitPairs.withUnsafeBufferPointer { pairs in
            String(unsafeUninitializedCapacity: input.count * 2) { output in
                let out = UnsafeMutableRawPointer(output.baseAddress!)
                for index in 0..<input.count {
                    out.storeBytes(of: pairs[Int(input[index])].littleEndian, toByteOffset: 2 * index, as: UInt16.self)
                }
                return input.count * 2
            }
        }
    }

    /// The lowercase digit of a value below 16.
    static func digit(_ value: UInt8) -> UInt8 { value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10 }

    /// Whether lowercase hex `text` spells exactly `bytes`, without building a string.
    public static func matches(_ text: String, _ bytes: some Sequence<UInt8>) -> Bool {
        if let result = bytes.withContiguousStorageIfAvailable({ matches(text, buffer: $0) }) { return result }
        return Array(bytes).withUnsafeBufferPointer { matches(text, buffer: $0) }
    }

    /// Whether lowercase hex `text` spells exactly `digest`.
    public static func matches(_ text: String, _ digest: some Digest) -> Bool {
        digest.withUnsafeBytes { matches(text, buffer: $0.assumingMemoryBound(to: UInt8.self)) }
    }

    private static func matches(_ text: String, buffer bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var text = text
        return digitPairs.withUnsafeBufferPointer { pairs in
            text.withUTF8 { hex in
                guard hex.count == bytes.count * 2, let base = hex.baseAddress else { return hex.count == bytes.count * 2 }
                // Every pair compared, differences ORed: no early exit to time, and no branch per byte.
                var difference: UInt16 = 0
                for index in 0..<bytes.count {
                    difference |= UnsafeRawPointer(base).loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self) ^ pairs[Int(bytes[index])].littleEndian
                }
                return difference == 0
            }
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
            // Branch-free over the whole string (one unsigned comparison per range), so the loop vectorizes.
            var invalid: UInt8 = 0
            for byte in bytes {
                let notDigit: UInt8 = byte &- UInt8(ascii: "0") > 9 ? 1 : 0
                let notLetter: UInt8 = byte &- UInt8(ascii: "a") > 5 ? 1 : 0
                invalid |= notDigit & notLetter
            }
            return invalid == 0
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
