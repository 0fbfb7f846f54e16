import Foundation
import ParleyClient
import Synchronization

/// Runs bucket work; on a terminal, says what a slow bucket is doing once the work has taken 2 s (standard error,
/// only when it is a terminal, so scripts and logs see nothing new).
func withBucketNotes<T>(_ body: () async throws -> T) async throws -> T {
    guard isatty(STDERR_FILENO) == 1 else { return try await body() }
    let notes = SlowBucketNotes()
    return try await S3Store.$observer.withValue(notes) {
        try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
            group.addTask { await notes.tell() }
            defer { group.cancelAll() }
            return try await body()
        }
    }
}

/// Follows a command's S3 requests and tells the person waiting what holds them up: after the first 2 s, each
/// retry and why, and a request that has had no answer for 2 s.
final class SlowBucketNotes: BucketRequestObserver {
    struct State {
        var inFlight: [String: Int] = [:]
        var lastActivity = ContinuousClock.now
        var stallTold = false
        var untoldRetry: String?
    }

    let state = Mutex(State())
    static let patience = Duration.seconds(2)

    func attemptStarted(location: String, attempt: Int, of maxAttempts: Int, after problem: String?) {
        state.withLock { state in
            if attempt == 1 { state.inFlight[location, default: 0] += 1 }
            state.lastActivity = .now
            state.stallTold = false
            if let problem { state.untoldRetry = "\(problem) Trying again (attempt \(attempt) of \(maxAttempts))…" }
        }
    }

    func requestEnded(location: String) {
        state.withLock { state in
            state.inFlight[location, default: 1] -= 1
            if state.inFlight[location] == 0 { state.inFlight[location] = nil }
            state.lastActivity = .now
            state.stallTold = false
            // Answered, or given up on (and then its error is printed): a retry it had is no news any more.
            state.untoldRetry = nil
        }
    }

    /// Prints notes until cancelled.
    func tell() async {
        do {
            try await Task.sleep(for: SlowBucketNotes.patience)
            while true {
                let note = state.withLock { state -> String? in
                    if let retry = state.untoldRetry {
                        state.untoldRetry = nil
                        return retry
                    }
                    guard let location = state.inFlight.keys.sorted().first, !state.stallTold,
                        ContinuousClock.now - state.lastActivity >= SlowBucketNotes.patience
                    else { return nil }
                    state.stallTold = true
                    return "Waiting for \(location) to answer…"
                }
                if let note { printError("note: \(note)") }
                try await Task.sleep(for: .milliseconds(250))
            }
        } catch {
            // Cancelled: the work is done.
        }
    }
}

/// SIGINT and SIGTERM delivered to async code rather than ending the process, so a long-running command can finish
/// what it must (`sync --watch` writes its outbox).
final class TerminationSignals: Sendable {
    private let stream: AsyncStream<Int32>
    private let sources: Mutex<[any DispatchSourceSignal]>

    init() {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        self.sources = Mutex(sources)
    }

    /// Waits for the first signal (or cancellation).
    func next() async {
        for await _ in stream { return }
    }

    /// Gives the signals their default action back.
    func restoreDefaults() {
        sources.withLock { sources in
            for source in sources { source.cancel() }
            sources.removeAll()
        }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
