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

    @Test func `a high or urgent event is written at once despite the flush delay, and before a due sync; a low one waits`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 5_000, flushAfterMs: 2_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100, priority: .low) == .wait(untilMs: start + 2_100))
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100, priority: .normal) == .wait(untilMs: start + 2_100))
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100, priority: .high) == .flush)
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100, priority: .urgent) == .flush)
        // After a flush a due sync goes first, unless what waits is urgent.
        schedule.succeeded(nowMs: start + 100, synced: false)
        #expect(schedule.next(nowMs: start + 5_000, oldestPendingMs: start + 4_000, priority: .normal) == .sync)
        #expect(schedule.next(nowMs: start + 5_000, oldestPendingMs: start + 4_000, priority: .urgent) == .flush)
        // A failing bucket is not hammered: the back-off holds for urgent events too.
        let delay = schedule.failed(nowMs: start + 5_000)
        #expect(schedule.next(nowMs: start + 5_001, oldestPendingMs: start + 5_001, priority: .urgent) == .wait(untilMs: start + 5_000 + delay))
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

    @Test func `a cap below the failure base is raised to it`() {
        #expect(BucketSchedule.Settings(pollIntervalMs: 10_000, maxDelayMs: 1_000).maxDelayMs == 10_000)
        #expect(BucketSchedule.Settings(pollIntervalMs: 10_000, maxDelayMs: 1_000, failureBaseMs: 500).maxDelayMs == 1_000)
    }

    @Test func `a room polled seldom retries a failing bucket from its failure base, and is not synced over and over`() {
        // A watched room: polled every 30 s, retried after failures as one polled every second is, waits capped at 2 s.
        var settings = BucketSchedule.Settings(pollIntervalMs: 1_000, maxDelayMs: 2_000)
        settings.pollIntervalMs = 30_000
        var schedule = BucketSchedule(settings: settings, nowMs: start)
        #expect(schedule.next(nowMs: start, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 5, oldestPendingMs: nil) == .wait(untilMs: start + 30_000))
        #expect(schedule.failed(nowMs: start + 10) == 2_000)
        #expect(schedule.failed(nowMs: start + 2_010) == 2_000)
        #expect(schedule.next(nowMs: start + 2_020, oldestPendingMs: nil) == .wait(untilMs: start + 4_010))
    }

    @Test func `an event dated ahead of the clock is written now, not when the clock reaches its time`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 10, oldestPendingMs: start + 240_000) == .flush)
    }

    @Test func `a clock stepped back by an hour does not hold the next sync back an hour`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000, maxDelayMs: 60_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        let stepped = start - 3_600_000
        #expect(schedule.next(nowMs: stepped, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: stepped, synced: true)
        #expect(schedule.next(nowMs: stepped, oldestPendingMs: nil) == .wait(untilMs: stepped + 1_000))
    }

    @Test func `a device that keeps sending still syncs when a sync is due`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        var now = start
        var actions: [BucketSchedule.Action] = []
        for _ in 0..<8 {
            now += 300
            let action = schedule.next(nowMs: now, oldestPendingMs: now - 1)
            actions.append(action)
            schedule.succeeded(nowMs: now, synced: action == .sync)
        }
        #expect(actions == [.flush, .flush, .flush, .sync, .flush, .flush, .flush, .sync])
    }

    @Test func `a poll interval too small to wait on is taken as 10 ms`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 0), nowMs: start)
        #expect(schedule.failed(nowMs: start) == 20)
    }

    @Test func `a change in the bucket makes the next action a sync at once, and then the poll interval runs from it`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 3_600_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 500, oldestPendingMs: nil) == .wait(untilMs: start + 3_600_000))
        schedule.objectsChanged(nowMs: start + 500)
        #expect(schedule.next(nowMs: start + 500, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: start + 520, synced: true)
        #expect(schedule.next(nowMs: start + 520, oldestPendingMs: nil) == .wait(untilMs: start + 3_600_520))
    }

    @Test func `changes told right after a sync wait 10 ms from its end, and many changes make one sync`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.succeeded(nowMs: start + 30, synced: true)
        for offset: Int64 in [31, 32, 33] { schedule.objectsChanged(nowMs: start + offset) }
        #expect(schedule.next(nowMs: start + 33, oldestPendingMs: nil) == .wait(untilMs: start + 40))
        #expect(schedule.next(nowMs: start + 40, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: start + 45, synced: true)
        #expect(schedule.next(nowMs: start + 45, oldestPendingMs: nil) == .wait(untilMs: start + 1_045))
    }

    @Test func `a change told before the first sync leaves it at once`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.objectsChanged(nowMs: start + 5)
        #expect(schedule.next(nowMs: start + 5, oldestPendingMs: nil) == .sync)
    }

    @Test func `a change told while failures hold the room back does not retry the bucket sooner`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        #expect(schedule.next(nowMs: start, oldestPendingMs: nil) == .sync)
        let delay = schedule.failed(nowMs: start)
        schedule.objectsChanged(nowMs: start + 100)
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: nil) == .wait(untilMs: start + delay))
        #expect(schedule.next(nowMs: start + delay, oldestPendingMs: nil) == .sync)
        schedule.succeeded(nowMs: start + delay, synced: true)
        schedule.objectsChanged(nowMs: start + delay + 50)
        #expect(schedule.next(nowMs: start + delay + 50, oldestPendingMs: nil) == .sync)
    }

    @Test func `after a flush, a change makes a sync before the next flush`() {
        var schedule = BucketSchedule(settings: .init(pollIntervalMs: 1_000), nowMs: start)
        schedule.succeeded(nowMs: start, synced: true)
        #expect(schedule.next(nowMs: start + 100, oldestPendingMs: start + 100) == .flush)
        schedule.succeeded(nowMs: start + 110, synced: false)
        // The flush's own file is a change the bucket tells of.
        schedule.objectsChanged(nowMs: start + 111)
        #expect(schedule.next(nowMs: start + 111, oldestPendingMs: start + 111) == .sync)
    }
}
