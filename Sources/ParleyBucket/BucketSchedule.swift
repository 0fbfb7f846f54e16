/// When a running node writes and reads one bucket room: flush this device's events once they have waited long
/// enough, sync at every poll interval, and after failures wait longer and longer (doubling from the poll interval up
/// to a cap), for flushing and syncing alike, since both talk to the same bucket.
///
/// It performs nothing and keeps no clock: the driver asks ``next(nowMs:oldestPendingMs:)`` what to do, does it,
/// reports the outcome, and waits as told (waking early when this device writes an event, to ask again).
public struct BucketSchedule: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        /// Between syncs while the bucket answers (ms).
        public var pollIntervalMs: Int64 = 1_000
        /// How long an event of this device may wait before it is written (ms); 0 writes it at once.
        public var flushAfterMs: Int64 = 0
        /// The longest wait after failures (ms).
        public var maxDelayMs: Int64 = 60_000

        public init(pollIntervalMs: Int64 = 1_000, flushAfterMs: Int64 = 0, maxDelayMs: Int64 = 60_000) {
            self.pollIntervalMs = pollIntervalMs
            self.flushAfterMs = flushAfterMs
            self.maxDelayMs = max(maxDelayMs, pollIntervalMs)
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

    public let settings: Settings
    /// Failures in a row.
    public private(set) var failures = 0
    private var nextSyncMs: Int64
    /// After a failure, no flush before this either.
    private var flushAllowedMs: Int64

    /// A schedule whose first sync is due at once.
    public init(settings: Settings, nowMs: Int64) {
        self.settings = settings
        nextSyncMs = nowMs
        flushAllowedMs = nowMs
    }

    /// What to do now.
    /// - Parameter oldestPendingMs: the time of this device's oldest event not yet written, if any.
    public func next(nowMs: Int64, oldestPendingMs: Int64?) -> Action {
        let flushDue = oldestPendingMs.map { max($0 + settings.flushAfterMs, flushAllowedMs) }
        if let flushDue, nowMs >= flushDue { return .flush }
        if nowMs >= nextSyncMs { return .sync }
        return .wait(untilMs: min(nextSyncMs, flushDue ?? .max))
    }

    /// A flush or a sync worked: the failures are over.
    /// - Parameter synced: whether it was a sync, which sets the time of the next one.
    public mutating func succeeded(nowMs: Int64, synced: Bool) {
        failures = 0
        flushAllowedMs = nowMs
        if synced { nextSyncMs = nowMs + settings.pollIntervalMs }
    }

    /// A flush or a sync failed.
    /// - Returns: how long (ms) nothing is tried: twice the poll interval after the first failure, doubling up to the cap.
    public mutating func failed(nowMs: Int64) -> Int64 {
        failures += 1
        let doubled = settings.pollIntervalMs.multipliedReportingOverflow(by: Int64(1) << min(failures, 30))
        let delay = doubled.overflow ? settings.maxDelayMs : min(settings.maxDelayMs, doubled.partialValue)
        nextSyncMs = nowMs + delay
        flushAllowedMs = nowMs + delay
        return delay
    }
}
