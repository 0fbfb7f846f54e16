import Testing

@testable import ParleyCore

@Suite struct PlainRunTests {
    @Test func `a plain run ends at the first quote, backslash, control or non-ASCII byte, wherever it is`() {
        let plain = (0x20...0x7F).map(UInt8.init).filter { $0 != 0x22 && $0 != 0x5C }
        let special = (0x00..<0x20).map(UInt8.init) + [0x22, 0x5C] + (0x80...0xFF).map(UInt8.init)
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 40] {
            // Plain bytes of every value, cycled, so each lane of a word sees each of them.
            let run = (0..<length).map { plain[($0 * 7 + length) % plain.count] }
            run.withUnsafeBufferPointer { #expect(PlainRun.end(in: $0, from: 0) == length, "plain, length \(length)") }
            for position in 0..<length {
                for byte in special {
                    var bytes = run
                    bytes[position] = byte
                    // A second special byte after the first must not move the answer.
                    if position + 1 < length { bytes[length - 1] = 0x22 }
                    bytes.withUnsafeBufferPointer { buffer in
                        #expect(PlainRun.end(in: buffer, from: 0) == position, "byte \(byte) at \(position) of \(length)")
                    }
                }
            }
        }
    }
}
