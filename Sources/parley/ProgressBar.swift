import Foundation
import ParleyClient
import Synchronization

/// A progress bar on standard error for work on more than 1 MiB (the total may be given later), drawn only when
/// standard error is a terminal (scripts and logs see nothing), at most ten times a second, and finished with a line
/// of its own.
final class ProgressBar: Sendable {
    struct State {
        var done: Int64 = 0
        var total: Int64
        var lastDrawn = ContinuousClock.now - .seconds(1)
        var drawn = false
    }

    let label: String
    let terminal: Bool
    let started = ContinuousClock.now
    let state: Mutex<State>

    /// Work smaller than this shows no bar.
    static let threshold: Int64 = 1 << 20

    init(_ label: String, total: Int64) {
        self.label = label
        terminal = isatty(STDERR_FILENO) == 1
        state = Mutex(State(total: total))
    }

    /// Sets how much is done.
    func set(_ done: Int64, of total: Int64? = nil) {
        guard terminal else { return }
        let line: String? = state.withLock { state in
            state.done = done
            if let total { state.total = total }
            guard state.total > ProgressBar.threshold else { return nil }
            let now = ContinuousClock.now
            guard now - state.lastDrawn >= .milliseconds(100) || done >= state.total else { return nil }
            state.lastDrawn = now
            state.drawn = true
            return render(state)
        }
        if let line { FileHandle.standardError.write(Data(("\r" + line).utf8)) }
    }

    /// Adds to what is done.
    func add(_ bytes: Int64) {
        guard terminal else { return }
        let done = state.withLock { $0.done + bytes }
        set(done)
    }

    /// Ends the bar's line, if one was drawn.
    func finish() {
        guard terminal, state.withLock({ $0.drawn }) else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    func render(_ state: State) -> String {
        let fraction = state.total > 0 ? min(1, Double(state.done) / Double(state.total)) : 1
        let width = 24
        let filled = Int(fraction * Double(width))
        let seconds = max(
            0.001, Double((ContinuousClock.now - started).components.attoseconds) / 1e18 + Double((ContinuousClock.now - started).components.seconds))
        let rate = Double(state.done) / seconds / 1_000_000
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        return String(format: "%@ [%@] %3d%% %@ of %@, %.0f MB/s ", label, bar, Int(fraction * 100), mebibytes(state.done), mebibytes(state.total), rate)
    }

    func mebibytes(_ bytes: Int64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
}
