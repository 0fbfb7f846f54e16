import Foundation
import ParleyTesting
import Synchronization
import Testing

@testable import ParleyTerminalUI

/// `/upload`'s progress: what the status line is told as a file is read into its request.
@Suite struct UploadProgressTests {
    @Test func `an upload reports each whole percent it passes, ending at the file's size, and reads every byte`() async throws {
        let directory = TemporaryDirectory()
        let path = directory.file("big.bin")
        let size = 3 * (1 << 20) + 12_345
        try Data(repeating: 7, count: size).write(to: URL(fileURLWithPath: path))
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        let told = Mutex<[(Int64, Int64)]>([])
        var read = 0
        for try await chunk in FileChunks(descriptor: descriptor, total: Int64(size), progress: { sent, total in told.withLock { $0.append((sent, total)) } }) {
            read += chunk.readableBytes
        }
        let reports = told.withLock { $0 }
        #expect(read == size)
        // A chunk of 1 MiB a report: each one passes a whole percent of a 3 MiB file.
        #expect(reports.map(\.0) == [1 << 20, 2 << 20, 3 << 20, Int64(size)])
        #expect(reports.allSatisfy { $0.1 == Int64(size) })
    }
}
