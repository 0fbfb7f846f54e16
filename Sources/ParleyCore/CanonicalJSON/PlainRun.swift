/// Finds runs of "plain" string bytes — printable ASCII other than `"` and `\` — eight at a time. Both the parser
/// and the canonical encoder spend most of their time in message bodies, which are mostly such runs.
enum PlainRun {
    /// The index of the first byte at or after `start` that is not plain (or `bytes.count`).
    @inline(__always)
    static func end(in bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var index = start
        let count = bytes.count
        if let base = bytes.baseAddress {
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            while index + 8 <= count {
                let word = UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self)
                // The classic "has a byte below n" and "has a zero byte" tests, without their `& ~word` terms: those
                // only rule out bytes of 0x80 and above, which set a high bit of `word` itself and count as special
                // anyway. Borrows can flag a byte above a special one, never a word without one. (Sixteen bytes a
                // turn was tried: it paid on message bodies and lost more on the many short strings of an event.)
                let special = (word | (word &- ones &* 0x20) | ((word ^ ones &* 0x22) &- ones) | ((word ^ ones &* 0x5C) &- ones)) & highs
                if special != 0 { break }
                index += 8
            }
        }
        while index < count {
            let byte = bytes[index]
            guard byte >= 0x20, byte < 0x80, byte != 0x22, byte != 0x5C else { break }
            index += 1
        }
        return index
    }
}
