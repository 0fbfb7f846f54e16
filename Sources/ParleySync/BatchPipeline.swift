import Dispatch
import Foundation

/// The one way to prepare the next batch while this one is stored: the caller prepares batches (signs them, reads and
/// verifies them, downloads them) and hands them over; one worker thread consumes them (stores them) meanwhile, with
/// at most `depth` batches waiting between the two.
///
/// Neither side outlives ``run(depth:consume:produce:)``: it returns only once the worker has finished. A failure on
/// either side stops the other — the producer's `put` throws ``BatchPipelineStopped`` once the consumer has ended, and
/// the consumer's `next` throws the producer's error (so a transaction spanning the batches rolls back) — and is the
/// error `run` throws.
public enum BatchPipeline<Batch: Sendable> {
    /// Runs `produce` on the caller's thread and `consume` on a worker thread, handing batches from one to the other.
    /// - Parameters:
    ///   - depth: the most batches prepared and not yet taken by the consumer; with 0, `put` returns only once the
    ///     consumer has taken the batch, so the producer prepares the next one while the consumer works on this one and
    ///     no more than two batches are held.
    ///   - consume: takes batches with `next` (nil once the producer is done and every batch taken) and returns its
    ///     result; returning before `next` gave nil stops the producer.
    ///   - produce: prepares batches and hands each to `put`.
    /// - Returns: what `consume` returned.
    public static func run<Output: Sendable>(
        depth: Int = 1, consume: @escaping @Sendable (_ next: () throws -> Batch?) throws -> Output, produce: (_ put: (Batch) throws -> Void) throws -> Void
    ) throws -> Output {
        let channel = Channel<Batch, Output>(depth: depth)
        channel.start(consume)
        do {
            try produce { batch in try channel.put(batch) }
            channel.close(failure: nil)
        } catch {
            channel.close(failure: error)
        }
        return try channel.outcome()
    }

    /// ``run(depth:consume:produce:)`` for a producer that awaits (downloads); its waits for room and for the worker
    /// are made on a dispatch thread, never on the concurrency pool's.
    public static func run<Output: Sendable>(
        depth: Int = 1, consume: @escaping @Sendable (_ next: () throws -> Batch?) throws -> Output,
        produce: (_ put: (Batch) async throws -> Void) async throws -> Void
    ) async throws -> Output {
        let channel = Channel<Batch, Output>(depth: depth)
        channel.start(consume)
        do {
            try await produce { batch in
                try await offPool { try channel.put(batch) }
            }
            channel.close(failure: nil)
        } catch {
            channel.close(failure: error)
        }
        return try await offPool { try channel.outcome() }
    }

    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue(label: "parley.pipeline.wait").async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// What a producer's `put` throws once the consumer has ended: there is no one to take the batch.
public struct BatchPipelineStopped: Error, CustomStringConvertible {
    public var description: String { "the consumer of the batches has ended" }
}

/// The state both sides share, under one condition variable.
final class Channel<Batch: Sendable, Output: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private let depth: Int
    private var waiting: [Batch] = []
    private var closed = false
    private var producerFailure: (any Error)?
    private var result: Result<Output, any Error>?

    /// Batches taken by the consumer so far.
    private var taken = 0

    init(depth: Int) { self.depth = max(0, depth) }

    /// Starts the consumer on a queue of its own. A serial queue runs on libdispatch's overcommitting pool, which
    /// starts a thread when none is free: `DispatchQueue.global()` keeps to one thread per core, so a consumer queued
    /// there while every one of them waits (for the home's lock, or for this very consumer) would wait seconds for the
    /// pool to notice. (Not a Foundation `Thread`: a thread that runs the store's dispatch work and then exits frees
    /// libdispatch's per-thread cache as it ends, and under load that cache held a continuation already freed.)
    func start(_ consume: @escaping @Sendable (_ next: () throws -> Batch?) throws -> Output) {
        DispatchQueue(label: "parley.pipeline.consumer").async {
            let outcome = Result { try consume { try self.next() } }
            self.condition.withLock {
                self.result = outcome
                self.condition.broadcast()
            }
        }
    }

    func put(_ batch: Batch) throws {
        try condition.withLock {
            while waiting.count >= max(1, depth) && result == nil { condition.wait() }
            guard result == nil else { throw BatchPipelineStopped() }
            waiting.append(batch)
            condition.broadcast()
            guard depth == 0 else { return }
            let mine = taken + waiting.count
            while taken < mine && result == nil { condition.wait() }
            guard result == nil || taken >= mine else { throw BatchPipelineStopped() }
        }
    }

    func next() throws -> Batch? {
        try condition.withLock {
            while waiting.isEmpty && !closed { condition.wait() }
            if let producerFailure { throw producerFailure }
            guard !waiting.isEmpty else { return nil }
            defer { condition.broadcast() }
            taken += 1
            return waiting.removeFirst()
        }
    }

    func close(failure: (any Error)?) {
        condition.withLock {
            closed = true
            producerFailure = failure
            condition.broadcast()
        }
    }

    /// Waits for the consumer; the producer's failure comes first (the consumer's is then only its echo).
    func outcome() throws -> Output {
        try condition.withLock {
            while result == nil { condition.wait() }
            if let producerFailure, !(producerFailure is BatchPipelineStopped) { throw producerFailure }
            return try result!.get()
        }
    }
}
