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
                let quotes = word ^ (ones &* 0x22)
                let backslashes = word ^ (ones &* 0x5C)
                // Classic "has a zero byte" and "has a byte below n" tests; false positives only after a true one.
                let special = (word & highs)
                    | ((word &- ones &* 0x20) & ~word & highs)
                    | ((quotes &- ones) & ~quotes & highs)
                    | ((backslashes &- ones) & ~backslashes & highs)
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
