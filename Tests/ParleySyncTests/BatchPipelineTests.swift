import ParleySync
import Synchronization
import Testing

/// How far the producer has gone and the consumer has got, as the consumer sees it.
final class Progress: Sendable {
    let produced = Atomic(0)
    let consumed = Atomic(0)
    let mostAhead = Atomic(0)

    func took() {
        let consumed = consumed.add(1, ordering: .sequentiallyConsistent).newValue
        let ahead = produced.load(ordering: .sequentiallyConsistent) - consumed
        _ = mostAhead.max(ahead, ordering: .sequentiallyConsistent)
    }
}

struct Refused: Error, Equatable {
    var at: Int
}

@Suite struct BatchPipelineTests {
    @Test("every batch reaches the consumer once, in order, and the producer runs at most depth batches ahead", arguments: [1, 4])
    func order(depth: Int) throws {
        let progress = Progress()
        let received = try BatchPipeline<Int>.run(depth: depth) { next in
            var received: [Int] = []
            while let batch = try next() {
                progress.took()
                received.append(batch)
            }
            return received
        } produce: { put in
            for batch in 0..<500 {
                // Counted before it is handed over: a batch waiting in the pipeline counts as ahead.
                progress.produced.add(1, ordering: .sequentiallyConsistent)
                try put(batch)
            }
        }
        #expect(received == Array(0..<500))
        // The batch being handed over, plus `depth` waiting.
        #expect(progress.mostAhead.load(ordering: .sequentiallyConsistent) <= depth + 1)
    }

    @Test("an awaiting producer hands every batch over once, in order, at most depth ahead", arguments: [1, 3])
    func awaitingOrder(depth: Int) async throws {
        let progress = Progress()
        let received = try await BatchPipeline<Int>.run(depth: depth) { next in
            var received: [Int] = []
            while let batch = try next() {
                progress.took()
                received.append(batch)
            }
            return received
        } produce: { put in
            for batch in 0..<300 {
                progress.produced.add(1, ordering: .sequentiallyConsistent)
                try await put(batch)
            }
        }
        #expect(received == Array(0..<300))
        #expect(progress.mostAhead.load(ordering: .sequentiallyConsistent) <= depth + 1)
    }

    @Test("a consumer that fails first is the failure thrown, even when the producer then fails too")
    func consumerFailsFirst() async throws {
        let consumerEnded = Atomic(false)
        await #expect(throws: Refused(at: 1)) {
            _ = try await BatchPipeline<Int>.run(depth: 1) { next in
                defer { consumerEnded.store(true, ordering: .sequentiallyConsistent) }
                _ = try next()
                throw Refused(at: 1)
            } produce: { put in
                do {
                    for batch in 0..<1_000 { try await put(batch) }
                } catch {
                    // The producer learns the consumer is gone, and fails in its own way.
                    throw Refused(at: 99)
                }
            }
        }
    }

    @Test("with depth 0 a put returns only once the consumer has taken the batch, so at most two are held")
    func handOff() async throws {
        let progress = Progress()
        let count = try await BatchPipeline<Int>.run(depth: 0) { next in
            var count = 0
            while try next() != nil {
                progress.took()
                count += 1
            }
            return count
        } produce: { put in
            for batch in 0..<200 {
                progress.produced.add(1, ordering: .sequentiallyConsistent)
                try await put(batch)
                // The consumer took this batch, so it has finished with the one before: nothing waits in the
                // pipeline while the next batch is prepared.
                #expect(progress.consumed.load(ordering: .sequentiallyConsistent) >= batch)
            }
        }
        #expect(count == 200)
        #expect(progress.mostAhead.load(ordering: .sequentiallyConsistent) <= 1)
    }

    @Test("a consumer that fails stops the producer, and its error is the one thrown")
    func consumerFails() throws {
        let handedOver = Atomic(0)
        #expect(throws: Refused(at: 3)) {
            _ = try BatchPipeline<Int>.run(depth: 2) { next in
                while let batch = try next() {
                    if batch == 3 { throw Refused(at: 3) }
                }
                return 0
            } produce: { put in
                for batch in 0..<100_000 {
                    try put(batch)
                    handedOver.add(1, ordering: .sequentiallyConsistent)
                }
            }
        }
        // Batches 0…3 taken, at most two more waiting, and one more put that found the consumer gone.
        #expect(handedOver.load(ordering: .sequentiallyConsistent) <= 7)
    }

    @Test("a producer that fails makes the consumer's next throw, so a transaction spanning the batches is not committed")
    func producerFails() throws {
        let committed = Atomic(false)
        let sawFailure = Atomic(false)
        #expect(throws: Refused(at: 2)) {
            _ = try BatchPipeline<Int>.run(depth: 4) { next in
                do {
                    while try next() != nil {}
                } catch {
                    sawFailure.store(true, ordering: .sequentiallyConsistent)
                    throw error
                }
                committed.store(true, ordering: .sequentiallyConsistent)
                return 0
            } produce: { put in
                try put(0)
                try put(1)
                throw Refused(at: 2)
            }
        }
        let sawFailureValue = sawFailure.load(ordering: .sequentiallyConsistent)
        #expect(sawFailureValue)
        let committedValue = committed.load(ordering: .sequentiallyConsistent)
        #expect(!committedValue)
    }

    @Test("run returns only after the consumer has finished, even when the producer fails at once")
    func joins() async throws {
        let finished = Atomic(false)
        await #expect(throws: Refused(at: 0)) {
            _ = try await BatchPipeline<Int>.run(depth: 1) { next in
                defer { finished.store(true, ordering: .sequentiallyConsistent) }
                while try next() != nil {}
                return 0
            } produce: { (_: (Int) async throws -> Void) async throws in
                throw Refused(at: 0)
            }
        }
        let finishedValue = finished.load(ordering: .sequentiallyConsistent)
        #expect(finishedValue)
    }
}
