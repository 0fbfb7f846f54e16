import ParleyCore
import Synchronization

/// The publish frames one connection sent that wait to be taken, so that frames arriving while earlier ones are stored
/// are stored and fanned out together: one transaction and, for each reader, one frame per batch instead of one per
/// event. A lone frame is taken at once, so batching adds no wait; it only grows while the relay is busy. Bounded: the
/// connection's reader waits (and stops reading its socket) while ``maxEvents`` are pending.
final class PendingPublishes: Sendable {
    struct Request: Sendable {
        var id: Int64
        var values: [JSONValue]
        var bytes: Int
        var arrived: ContinuousClock.Instant
    }

    private struct State {
        var requests: [Request] = []
        var events = 0
        var busy = false
        var closed = false
        var worker: CheckedContinuation<[Request]?, Never>?
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// The most events taken in one batch, and the most pending before the reader waits.
    let maxEvents: Int
    private let state = Mutex(State())

    init(maxEvents: Int = RelayFrame.maxEvents) { self.maxEvents = maxEvents }

    /// Adds a frame, first waiting while the buffer is full.
    func add(_ request: Request) async {
        while state.withLock({ !$0.closed && $0.events >= maxEvents }) {
            await withCheckedContinuation { continuation in
                let waitNow = state.withLock { state in
                    guard !state.closed, state.events >= maxEvents else { return false }
                    state.roomWaiters.append(continuation)
                    return true
                }
                if !waitNow { continuation.resume() }
            }
        }
        let (worker, batch): (CheckedContinuation<[Request]?, Never>?, [Request]?) = state.withLock { state in
            guard !state.closed else { return (nil, nil) }
            state.requests.append(request)
            state.events += request.values.count
            guard let worker = state.worker else { return (nil, nil) }
            state.worker = nil
            return (worker, takeBatch(&state))
        }
        worker?.resume(returning: batch)
    }

    /// The next batch: every pending frame up to ``maxEvents`` events (at least one frame); `nil` once closed and empty.
    /// Call ``finished()`` after handling it.
    func take() async -> [Request]? {
        await withCheckedContinuation { continuation in
            let (ready, waiters): ([Request]??, [CheckedContinuation<Void, Never>]) = state.withLock { state in
                if !state.requests.isEmpty {
                    let batch = takeBatch(&state)
                    var waiters: [CheckedContinuation<Void, Never>] = []
                    swap(&waiters, &state.roomWaiters)
                    return (.some(batch), waiters)
                }
                if state.closed { return (.some(nil), []) }
                state.worker = continuation
                return (.none, [])
            }
            for waiter in waiters { waiter.resume() }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func takeBatch(_ state: inout State) -> [Request] {
        var count = 1
        var events = state.requests[0].values.count
        while count < state.requests.count, events + state.requests[count].values.count <= maxEvents {
            events += state.requests[count].values.count
            count += 1
        }
        let batch = Array(state.requests.prefix(count))
        state.requests.removeFirst(count)
        state.events -= events
        state.busy = true
        return batch
    }

    /// The batch last taken is handled.
    func finished() {
        let waiters: [CheckedContinuation<Void, Never>] = state.withLock { state in
            state.busy = false
            guard state.requests.isEmpty else { return [] }
            defer { state.idleWaiters = [] }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once every frame added so far is handled: what the connection asks next sees its publishes.
    func drained() async {
        await withCheckedContinuation { continuation in
            let idle = state.withLock { state in
                if state.requests.isEmpty && !state.busy || state.closed { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    /// Takes no more frames; the worker gets what is pending, then `nil`.
    func close() {
        let (worker, waiters): (CheckedContinuation<[Request]?, Never>?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
            state.closed = true
            defer {
                state.worker = nil
                state.roomWaiters = []
                state.idleWaiters = []
            }
            return (state.requests.isEmpty ? state.worker : nil, state.roomWaiters + state.idleWaiters)
        }
        worker?.resume(returning: nil)
        for waiter in waiters { waiter.resume() }
    }
}
