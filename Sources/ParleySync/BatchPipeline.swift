import Dispatch
import Foundation

/// The one way to prepare the next batch while this one is stored: the caller prepares batches (signs them, reads and
/// verifies them, downloads them) and hands them over; one worker thread consumes them (stores them) meanwhile, with
/// at most `depth` batches waiting between the two.
///
/// Neither side outlives ``run(depth:consume:produce:)``: it returns only once the worker has finished. A failure on
/// either side stops the other — the producer's `put` throws ``BatchPipelineStopped`` once the consumer has ended, and
/// the consumer's `next` throws the producer's error (so a transaction spanning the batches rolls back) — and is the
/// error `run` throws: the side that failed first.
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

    /// ``run(depth:consume:produce:)`` for a producer that awaits (downloads). Its waits, for room and for the worker,
    /// suspend: no thread is held while it waits.
    public static func run<Output: Sendable>(
        depth: Int = 1, consume: @escaping @Sendable (_ next: () throws -> Batch?) throws -> Output,
        produce: (_ put: (Batch) async throws -> Void) async throws -> Void
    ) async throws -> Output {
        let channel = Channel<Batch, Output>(depth: depth)
        channel.start(consume)
        do {
            try await produce { batch in try await channel.putSuspending(batch) }
            channel.close(failure: nil)
        } catch {
            channel.close(failure: error)
        }
        return try await channel.outcomeSuspending()
    }
}

/// What a producer's `put` throws once the consumer has ended: there is no one to take the batch.
public struct BatchPipelineStopped: Error, CustomStringConvertible {
    public var description: String { "the consumer of the batches has ended" }
}

/// The state both sides share, under one condition variable; an awaiting producer waits by a continuation that the
/// consumer resumes.
final class Channel<Batch: Sendable, Output: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private let depth: Int
    private var waiting: [Batch] = []
    private var closed = false
    private var producerFailure: (any Error)?
    private var result: Result<Output, any Error>?
    /// Whether the consumer had ended before the producer was done: its failure is then the first.
    private var consumerEndedFirst = false
    /// Batches taken by the consumer so far.
    private var taken = 0
    /// An awaiting producer's batch that found no room, and its continuation.
    private var blockedPut: (batch: Batch, continuation: CheckedContinuation<Void, any Error>)?
    /// An awaiting producer whose batch waits to be taken (depth 0): how many must have been taken, and its continuation.
    private var handOff: (taken: Int, continuation: CheckedContinuation<Void, any Error>)?
    private var outcomeWaiter: CheckedContinuation<Output, any Error>?

    init(depth: Int) { self.depth = max(0, depth) }

    private var room: Int { max(1, depth) }

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
                self.consumerEndedFirst = !self.closed
                self.condition.broadcast()
                self.blockedPut.take()?.continuation.resume(throwing: BatchPipelineStopped())
                self.resumeHandOff()
                self.resumeOutcome()
            }
        }
    }

    func put(_ batch: Batch) throws {
        try condition.withLock {
            while waiting.count >= room && result == nil { condition.wait() }
            guard result == nil else { throw BatchPipelineStopped() }
            waiting.append(batch)
            condition.broadcast()
            guard depth == 0 else { return }
            let mine = taken + waiting.count
            while taken < mine && result == nil { condition.wait() }
            guard taken >= mine else { throw BatchPipelineStopped() }
        }
    }

    func putSuspending(_ batch: Batch) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            condition.withLock {
                guard result == nil else { return continuation.resume(throwing: BatchPipelineStopped()) }
                guard waiting.count < room else {
                    blockedPut = (batch, continuation)
                    return
                }
                accept(batch, continuation)
            }
        }
    }

    /// Queues a batch of an awaiting producer; it goes on at once, or (depth 0) once the batch is taken. Under the lock.
    private func accept(_ batch: Batch, _ continuation: CheckedContinuation<Void, any Error>) {
        waiting.append(batch)
        condition.broadcast()
        if depth == 0 { handOff = (taken + waiting.count, continuation) } else { continuation.resume() }
    }

    /// Resumes a producer waiting for its batch to be taken, once it is or once the consumer has ended. Under the lock.
    private func resumeHandOff() {
        guard let waiter = handOff, taken >= waiter.taken || result != nil else { return }
        handOff = nil
        if taken >= waiter.taken { waiter.continuation.resume() } else { waiter.continuation.resume(throwing: BatchPipelineStopped()) }
    }

    func next() throws -> Batch? {
        try condition.withLock {
            while waiting.isEmpty && !closed && blockedPut == nil { condition.wait() }
            if let producerFailure { throw producerFailure }
            guard !waiting.isEmpty else { return nil }
            defer { condition.broadcast() }
            taken += 1
            let batch = waiting.removeFirst()
            if let blocked = blockedPut.take() { accept(blocked.batch, blocked.continuation) }
            resumeHandOff()
            return batch
        }
    }

    func close(failure: (any Error)?) {
        condition.withLock {
            closed = true
            producerFailure = failure
            condition.broadcast()
        }
    }

    /// The outcome once the consumer has ended: the failure of the side that failed first.
    private var finalOutcome: Result<Output, any Error> {
        if let producerFailure, !consumerEndedFirst, !(producerFailure is BatchPipelineStopped) { return .failure(producerFailure) }
        return result!
    }

    func outcome() throws -> Output {
        try condition.withLock {
            while result == nil { condition.wait() }
            return try finalOutcome.get()
        }
    }

    func outcomeSuspending() async throws -> Output {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Output, any Error>) in
            condition.withLock {
                outcomeWaiter = continuation
                resumeOutcome()
            }
        }
    }

    /// Resumes the awaiting producer's wait for the outcome, once there is one. Under the lock.
    private func resumeOutcome() {
        guard result != nil, let waiter = outcomeWaiter else { return }
        outcomeWaiter = nil
        waiter.resume(with: finalOutcome)
    }
}
