import ParleyCore

/// When a running node writes and reads one bucket room: flush this device's events once they have waited long
/// enough, sync at every poll interval and as soon as the bucket says the room's objects changed, and after failures
/// wait longer and longer (doubling from the poll interval up to a cap), for flushing and syncing alike, since both
/// talk to the same bucket.
///
/// It performs nothing and keeps no clock: the driver asks ``next(nowMs:oldestPendingMs:)`` what to do, does it,
/// reports the outcome, and waits as told (waking early when this device writes an event or the bucket tells of a
/// change, to ask again).
public struct BucketSchedule: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Between syncs while the bucket answers (ms).
        public var pollIntervalMs: Int64 = 1_000
        /// How long an event of this device may wait before it is written (ms); 0 writes it at once.
        public var flushAfterMs: Int64 = 0
        /// The longest wait after failures (ms).
        public var maxDelayMs: Int64 = 60_000
        /// The wait after a first failure is twice this, doubling with each failure after it (ms); the poll interval
        /// unless set. A room whose bucket tells of changes polls seldom, but retries a failing bucket as often as one
        /// it polls.
        public var failureBaseMs: Int64

        /// A poll interval under ``BucketSchedule/minimumGapMs`` is taken as that: a node polling without pause only
        /// burns the CPU.
        public init(pollIntervalMs: Int64 = 1_000, flushAfterMs: Int64 = 0, maxDelayMs: Int64 = 60_000, failureBaseMs: Int64? = nil) {
            self.pollIntervalMs = max(BucketSchedule.minimumGapMs, pollIntervalMs)
            self.flushAfterMs = max(0, flushAfterMs)
            self.failureBaseMs = max(BucketSchedule.minimumGapMs, failureBaseMs ?? self.pollIntervalMs)
            self.maxDelayMs = max(maxDelayMs, self.failureBaseMs)
        }
    }

    public enum Action: Sendable, Equatable {
        /// Write this device's pending events; then ``succeeded(nowMs:synced:)`` or ``failed(nowMs:)``.
        case flush
        /// Read what others wrote; then ``succeeded(nowMs:synced:)`` or ``failed(nowMs:)``.
        case sync
        /// Wait until this time (ms), or until this device writes an event; then ask again.
        case wait(untilMs: Int64)
    }

    /// The least time between the end of one sync and the start of the next (10 ms), however often the bucket tells
    /// of changes.
    public static let minimumGapMs: Int64 = 10

    public let settings: Settings
    /// Failures in a row.
    public private(set) var failures = 0
    private var nextSyncMs: Int64
    /// When the last sync that worked ended.
    private var lastSyncMs: Int64?
    /// After a failure, no flush before this either.
    private var flushAllowedMs: Int64
    /// Whether the last action that worked was a flush: a sync that is due then goes first, so a device that keeps
    /// sending still reads what others write.
    private var lastWasFlush = false

    /// A schedule whose first sync is due at once.
    public init(settings: Settings, nowMs: Int64) {
        self.settings = settings
        nextSyncMs = nowMs
        flushAllowedMs = nowMs
    }

    /// What to do now.
    /// - Parameters:
    ///   - oldestPendingMs: the time of this device's oldest event not yet written, if any. An event dated ahead of the
    ///     clock (a room whose newest event is) counts as written now.
    ///   - priority: the highest priority of those events (§7.6): from `high` on they are written at once, without
    ///     waiting ``Settings/flushAfterMs`` for more to join them, and before a sync that is due.
    public func next(nowMs: Int64, oldestPendingMs: Int64?, priority: MessagePriority = .normal) -> Action {
        // Times set from a clock that has since stepped back by more than the longest wait count as due: waiting
        // for the clock to catch up could take hours.
        let longestWaitMs = max(settings.maxDelayMs, settings.pollIntervalMs)
        let syncDue = nextSyncMs > nowMs + longestWaitMs ? nowMs : nextSyncMs
        let flushAllowed = flushAllowedMs > nowMs + longestWaitMs ? nowMs : flushAllowedMs
        let pressing = priority >= .high
        let flushDue = oldestPendingMs.map { max(min($0, nowMs) + (pressing ? 0 : settings.flushAfterMs), flushAllowed) }
        if lastWasFlush, !pressing || flushDue.map({ nowMs < $0 }) ?? true, nowMs >= syncDue { return .sync }
        if let flushDue, nowMs >= flushDue { return .flush }
        if nowMs >= syncDue { return .sync }
        return .wait(untilMs: min(syncDue, flushDue ?? .max))
    }

    /// A flush or a sync worked: the failures are over.
    /// - Parameter synced: whether it was a sync, which sets the time of the next one.
    public mutating func succeeded(nowMs: Int64, synced: Bool) {
        failures = 0
        flushAllowedMs = nowMs
        lastWasFlush = !synced
        if synced {
            nextSyncMs = nowMs + settings.pollIntervalMs
            lastSyncMs = nowMs
        }
    }

    /// The bucket told of a change to the room's objects: the next sync is due now, or ``minimumGapMs`` after the last
    /// one. Not while failures hold the room back: a notice must not make it retry a failing bucket sooner.
    public mutating func objectsChanged(nowMs: Int64) {
        guard failures == 0 else { return }
        let soonest = lastSyncMs.map { max(nowMs, $0 + BucketSchedule.minimumGapMs) } ?? nowMs
        nextSyncMs = min(nextSyncMs, soonest)
    }

    /// A flush or a sync failed.
    /// - Returns: how long (ms) nothing is tried: twice the failure base (the poll interval unless set) after the first
    ///   failure, doubling up to the cap.
    public mutating func failed(nowMs: Int64) -> Int64 {
        failures += 1
        let doubled = settings.failureBaseMs.multipliedReportingOverflow(by: Int64(1) << min(failures, 30))
        let delay = doubled.overflow ? settings.maxDelayMs : min(settings.maxDelayMs, doubled.partialValue)
        nextSyncMs = nowMs + delay
        flushAllowedMs = nowMs + delay
        return delay
    }
}
