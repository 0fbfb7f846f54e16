import ParleyBucket
import Testing

/// When a running node flushes and syncs one room, as transcripts of times, outcomes and the action expected.
@Suite struct BucketScheduleTests {
    let start: Int64 = 1_700_000_000_000

    @Test func `the first sync is at once, then one every poll interval, with waits in between`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        #expect(schedule.next(nowMs: start, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: start + 30, synced: true)
        #expect(schedule.next(nowMs: start + 30, oldestPendingMs: nil) == .wait(untilMs: start + 1_030))
        #expect(schedule.next(nowMs: start + 1_030, oldestPendingMs: nil) == .sync)
    }

    @Test func `an event of this device is written at once by default, before the next sync`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 200, oldestPendingMs: start + 190) == .flush)
        schedule.succeeded(nowMs: start + 220, synced: false)
        #expect(schedule.next(nowMs: start + 220, oldestPendingMs: nil) == .wait(untilMs: start + 1_000))
    }

    @Test func `with a flush delay an event waits that long, and the wait ends when it is due`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 5_000, flushAfterMs: 2_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100) == .wait(untilMs: start + 2_100))
        #expect(schedule.next(nowMs: start + 2_100, oldestPendingMs: start + 100) == .flush)
    }

    @Test func `failures double the wait from the poll interval up to the cap, for flushing too, and a success ends them`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000, maxDelayMs: 20_000), nowMs: start)
        var now = start
        var delays: [Int64] = []
        for _ in 0..<6 {
            #expect(schedule.next(nowMs: now, oldestPendingMs: nil) == .sync)
            let delay = schedule.failed(nowMs: now)
            delays.append(delay)
            // An event written meanwhile waits for the bucket too.
            #expect(schedule.next(nowMs: now + 1, oldestPendingMs: now + 1) == .wait(untilMs: now + delay))
            now += delay
        }
        #expect(delays == [2_000, 4_000, 8_000, 16_000, 20_000, 20_000])
        #expect(schedule.failures == 6)
        #expect(schedule.next(nowMs: now, oldestPendingMs: now - 5) == .flush)
        schedule.succeeded(nowMs: now, synced: false)
        #expect(schedule.failures == 0)
        #expect(schedule.failed(nowMs: now) == 2_000)
    }

    @Test func `a cap below the poll interval is raised to it`() {
        #expect(BucketSchedule.Settings(pollIntervalMs: 10_000, maxDelayMs: 1_000).maxDelayMs == 10_000)
    }
}
