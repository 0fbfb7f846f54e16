#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The operating system's random generator, drawn 256 bytes at a time: one system call where
/// `SystemRandomNumberGenerator` makes one per 8 bytes, which cost as much as sealing a message's content.
///
/// For the random ids and nonces of one operation (a burst of sends), not for keys: the words it has handed out are
/// not wiped from its buffer. A copy of a generator (or a process forked while one lives) repeats its words, so each
/// operation makes its own and never copies it.
public struct BufferedRandom: RandomNumberGenerator {
    private static let wordCount = 32
    private var words: [UInt64] = []

    public init() {}

    public mutating func next() -> UInt64 {
        if words.isEmpty { refill() }
        return words.removeLast()
    }

    private mutating func refill() {
        words = [UInt64](unsafeUninitializedCapacity: Self.wordCount) { buffer, initialized in
            // glibc (2.36 and later) fills it with one getrandom call, blocking only until the kernel is seeded.
            arc4random_buf(buffer.baseAddress!, Self.wordCount * MemoryLayout<UInt64>.size)
            initialized = Self.wordCount
        }
    }
}
