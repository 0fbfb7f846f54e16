import Foundation

/// Runs the built `parley` executable as a user would, for end-to-end tests.
public struct ParleyCommand: Sendable {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var stdoutBytes: [UInt8]
        /// Peak resident memory of this run, in kilobytes, when it was measured (`measuringMemory: true`).
        public var maxRSSKilobytes: Int?
    }

    /// The package's debug build of `parley`, found from this source file's location.
    public static let executable = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/parley")

    public let home: String

    public init(home: String) {
        self.home = home
    }

    /// Runs `parley --home HOME ARGUMENTS…`, feeding `input` on standard input.
    @discardableResult
    public func run(
        _ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:], measuringMemory: Bool = false
    ) throws -> Output {
        try ParleyCommand.run(["--home", home] + arguments, input: input, inputFile: inputFile, environment: environment, measuringMemory: measuringMemory)
    }

    /// Runs the command under a small Python parent that waits for exactly that process and reports its peak RSS:
    /// this process's own RUSAGE_CHILDREN would also count commands of tests running in parallel.
    static let memoryWrapper = """
        import os, sys
        pid = os.fork()
        if pid == 0:
            os.execv(sys.argv[1], sys.argv[1:])
        _, status, usage = os.wait4(pid, 0)
        sys.stderr.write("\\nparley-test-maxrss=%d\\n" % usage.ru_maxrss)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    static let memoryMarker = "\nparley-test-maxrss="

    /// Runs `parley ARGUMENTS…`; `environment` adds to (or replaces) this process's variables.
    public static func run(
        _ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:], measuringMemory: Bool = false
    ) throws -> Output {
        let process = Process()
        if measuringMemory {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", memoryWrapper, executable.path] + arguments
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        var inputPipe: Pipe?
        if let inputFile {
            process.standardInput = FileHandle(forReadingAtPath: inputFile)
        } else {
            inputPipe = Pipe()
            process.standardInput = inputPipe
        }
        try process.run()
        if let inputPipe {
            // Write from another thread so a large input cannot deadlock against a full output pipe.
            let writer = inputPipe.fileHandleForWriting
            let data = Data(input)
            Thread.detachNewThread {
                writer.write(data)
                try? writer.close()
            }
        }
        let outData = OutputCollector(stdout.fileHandleForReading)
        let errData = OutputCollector(stderr.fileHandleForReading)
        process.waitUntilExit()
        let out = outData.finish()
        var stderrText = String(decoding: errData.finish(), as: UTF8.self)
        var maxRSS: Int?
        if measuringMemory, let marker = stderrText.range(of: memoryMarker, options: .backwards) {
            maxRSS = Int(stderrText[marker.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines))
            stderrText.removeSubrange(marker.lowerBound...)
        }
        return Output(
            status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: stderrText,
            stdoutBytes: Array(out), maxRSSKilobytes: maxRSS)
    }
}

/// Drains a pipe on a background thread.
final class OutputCollector: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func finish() -> Data {
        done.wait()
        return data
    }
}
