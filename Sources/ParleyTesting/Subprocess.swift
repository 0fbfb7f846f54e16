import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with `posix_spawn` and reaped with `waitpid`, its pipes served by `poll` on the calling
/// thread.
///
/// Tests start hundreds of commands from many threads at once. Foundation's `Process.waitUntilExit()` runs a run
/// loop on the calling thread, in a test a worker thread of the concurrency pool, and collecting output took a
/// helper thread per pipe; this uses neither.
public struct Subprocess: Sendable {
    /// Where a standard stream of the child goes.
    public enum Stream: Sendable {
        /// A pipe whose other end this process reads (output) or writes (input).
        case pipe
        /// `/dev/null`.
        case null
        /// A file opened for reading: for standard input only.
        case file(String)
    }

    /// glibc's `pipe2`, which Swift's Glibc module does not import.
    private static let pipe2: @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32 = {
        guard let symbol = dlsym(nil, "pipe2") else { fatalError("glibc has no pipe2") }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()

    /// Writing to a child that has exited must fail with EPIPE, not kill the test process.
    private static let ignoreBrokenPipes: Void = { signal(SIGPIPE, SIG_IGN) }()

    public let pid: pid_t
    /// This process's ends of the child's pipes, -1 where the stream is not a pipe. Each is created close-on-exec
    /// (atomically, with pipe2), so no other child started meanwhile inherits it and keeps the pipe open.
    let input: Int32
    let output: Int32
    let error: Int32

    /// Starts `path` with `arguments` (without the program name).
    /// - Parameters:
    ///   - environment: the child's whole environment; `nil` passes this process's own.
    ///   - ownProcessGroup: puts the child in a new process group whose id is its pid, so `kill(-pid, …)` reaches
    ///     everything it starts.
    public static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String]? = nil, stdin: Stream = .null, stdout: Stream = .pipe,
        stderr: Stream = .pipe, ownProcessGroup: Bool = false
    ) throws -> Subprocess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        _ = ignoreBrokenPipes
        // The child gets SIGPIPE's default back: a command writing into a closed pipe should end as it would in a shell.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGDEF)
        if ownProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        // The child's ends, closed here once it has its copies.
        var childEnds: [Int32] = []
        defer { for descriptor in childEnds { close(descriptor) } }
        var parentEnds: [Int32] = [-1, -1, -1]
        for (target, stream) in [stdin, stdout, stderr].enumerated() {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, Int32(target), "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .file(let file):
                precondition(target == 0, "only standard input reads from a file")
                posix_spawn_file_actions_addopen(&actions, 0, file, O_RDONLY, 0)
            case .pipe:
                var ends: [Int32] = [-1, -1]
                guard Subprocess.pipe2(&ends, O_CLOEXEC) == 0 else {
                    for descriptor in parentEnds where descriptor >= 0 { close(descriptor) }
                    throw SubprocessError("pipe: \(String(cString: strerror(errno)))")
                }
                let (childEnd, parentEnd) = target == 0 ? (ends[0], ends[1]) : (ends[1], ends[0])
                childEnds.append(childEnd)
                parentEnds[target] = parentEnd
                // dup2 gives the child its copy without close-on-exec.
                posix_spawn_file_actions_adddup2(&actions, childEnd, Int32(target))
            }
        }

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let variables = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in variables { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, variables)
        guard result == 0 else {
            for descriptor in parentEnds where descriptor >= 0 { close(descriptor) }
            throw SubprocessError("cannot start \(path): \(String(cString: strerror(result)))")
        }
        return Subprocess(pid: pid, input: parentEnds[0], output: parentEnds[1], error: parentEnds[2])
    }

    /// Writes `bytes` to the child's standard input (then closes it) while reading its standard output and error
    /// to their ends, then waits for it to exit. Each pipe end is used once: call this or ``wait()``, not both.
    public func communicate(_ bytes: [UInt8] = []) -> (status: Int32, stdout: [UInt8], stderr: [UInt8]) {
        var collected: [[UInt8]] = [[], []]
        var pending = bytes[...]
        var open: [(descriptor: Int32, slot: Int)] = []
        if input >= 0 {
            if pending.isEmpty {
                close(input)
            } else {
                // Non-blocking, so a child that writes before it reads cannot deadlock against us.
                _ = fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK)
                open.append((input, -1))
            }
        }
        if output >= 0 { open.append((output, 0)) }
        if error >= 0 { open.append((error, 1)) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !open.isEmpty {
            var polled = open.map { pollfd(fd: $0.descriptor, events: Int16($0.slot < 0 ? POLLOUT : POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), -1) >= 0 || errno == EINTR else { break }
            var finished: Set<Int32> = []
            for (index, entry) in open.enumerated() where polled[index].revents != 0 {
                if entry.slot < 0 {
                    let written = pending.withUnsafeBytes { write(entry.descriptor, $0.baseAddress, $0.count) }
                    if written > 0 { pending = pending.dropFirst(written) }
                    if pending.isEmpty || (written < 0 && errno != EAGAIN && errno != EINTR) { finished.insert(entry.descriptor) }
                } else {
                    let count = buffer.withUnsafeMutableBytes { read(entry.descriptor, $0.baseAddress, $0.count) }
                    if count > 0 {
                        collected[entry.slot] += buffer[..<count]
                    } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                        finished.insert(entry.descriptor)
                    }
                }
            }
            for descriptor in finished { close(descriptor) }
            open.removeAll { finished.contains($0.descriptor) }
        }
        for entry in open { close(entry.descriptor) }
        return (reap(), collected[0], collected[1])
    }

    /// Reads what the child has written to standard output so far, waiting up to `timeout` seconds for more;
    /// empty at end of file or when nothing came.
    public func readOutput(timeout: Double) -> [UInt8] {
        Subprocess.readAvailable(output, timeout: timeout)
    }

    /// ``readOutput(timeout:)`` for standard error.
    public func readError(timeout: Double) -> [UInt8] {
        Subprocess.readAvailable(error, timeout: timeout)
    }

    private static func readAvailable(_ descriptor: Int32, timeout: Double) -> [UInt8] {
        var polled = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
        guard poll(&polled, 1, Int32(timeout * 1000)) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        return count > 0 ? Array(buffer[..<count]) : []
    }

    /// Sends `signal` to the child, or with `group` to its whole process group (see `ownProcessGroup`).
    public func kill(_ signal: Int32, group: Bool = false) {
        _ = Glibc.kill(group ? -pid : pid, signal)
    }

    /// Closes this process's pipe ends and waits for the child to exit: its exit status, or 128 + the signal that
    /// ended it (as a shell reports it).
    @discardableResult
    public func wait() -> Int32 {
        for descriptor in [input, output, error] where descriptor >= 0 { close(descriptor) }
        return reap()
    }

    private func reap() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }
}

public struct SubprocessError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
