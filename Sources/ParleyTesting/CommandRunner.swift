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

    /// The package's root folder (where Package.swift is), found from this source file's location.
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The package's debug build of `parley`.
    public static let executable = packageRoot.appendingPathComponent(".build/debug/parley")

    public let home: String

    public init(home: String) {
        self.home = home
    }

    /// Runs `parley --home HOME ARGUMENTS…`, feeding `input` on standard input.
    /// - Parameter errorToTerminal: gives the command a terminal as standard error (what it writes there comes back
    ///   in `stderr`, with the terminal's CR LF line ends), for what it says only to a person watching.
    @discardableResult
    public func run(
        _ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:], measuringMemory: Bool = false,
        errorToTerminal: Bool = false
    ) throws -> Output {
        try ParleyCommand.run(
            ["--home", home] + arguments, input: input, inputFile: inputFile, environment: environment, measuringMemory: measuringMemory,
            errorToTerminal: errorToTerminal)
    }

    /// Runs the command with a pseudo-terminal as its standard error, and passes what it wrote there on as this
    /// wrapper's standard error once it has exited.
    static let terminalWrapper = """
        import os, pty, subprocess, sys
        master, slave = pty.openpty()
        child = subprocess.Popen(sys.argv[1:], stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        child.wait()
        sys.stderr.buffer.write(b"".join(chunks))
        sys.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)
        """

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
        _ arguments: [String], input: [UInt8] = [], inputFile: String? = nil, environment: [String: String] = [:], measuringMemory: Bool = false,
        errorToTerminal: Bool = false
    ) throws -> Output {
        precondition(!(measuringMemory && errorToTerminal), "one wrapper at a time")
        let path = measuringMemory || errorToTerminal ? "/usr/bin/python3" : executable.path
        let argv =
            measuringMemory
            ? ["-c", memoryWrapper, executable.path] + arguments : errorToTerminal ? ["-c", terminalWrapper, executable.path] + arguments : arguments
        let child = try Subprocess.spawn(
            path, argv, environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 },
            stdin: inputFile.map(Subprocess.Stream.file) ?? .pipe)
        let (status, out, err) = child.communicate(input)
        var stderrText = String(decoding: err, as: UTF8.self)
        var maxRSS: Int?
        if measuringMemory, let marker = stderrText.range(of: memoryMarker, options: .backwards) {
            maxRSS = Int(stderrText[marker.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines))
            stderrText.removeSubrange(marker.lowerBound...)
        }
        return Output(status: status, stdout: String(decoding: out, as: UTF8.self), stderr: stderrText, stdoutBytes: out, maxRSSKilobytes: maxRSS)
    }
}
