import Foundation

/// Runs the built `parley` executable as a user would, for end-to-end tests.
public struct ParleyCommand: Sendable {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var stdoutBytes: [UInt8]
        /// Peak resident memory of the largest child this process has waited for so far, in kilobytes: an upper
        /// bound for this run's peak.
        public var maxRSSKilobytes: Int
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
    public func run(_ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:]) throws -> Output {
        try ParleyCommand.run(["--home", home] + arguments, input: input, inputFile: inputFile, environment: environment)
    }

    /// Runs `parley ARGUMENTS…`; `environment` adds to (or replaces) this process's variables.
    public static func run(_ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:]) throws -> Output {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
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
        let err = errData.finish()
        var usage = rusage()
        getrusage(Int32(RUSAGE_CHILDREN.rawValue), &usage)
        return Output(
            status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self),
            stdoutBytes: Array(out), maxRSSKilobytes: usage.ru_maxrss)
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
