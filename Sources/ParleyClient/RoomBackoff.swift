import Foundation
import ParleyBucket

/// One room's failures while `parley sync --watch` polls it: how long to wait before the next attempt, and what to
/// tell the user. The wait doubles from the poll interval with each failure in a row, up to `maxDelay`; the first
/// failure is told in full, the same failure again as a count, and the recovery once.
public struct RoomBackoff: Sendable {
    public let roomID: String
    public let bucket: String
    /// Seconds between polls while the room syncs.
    public let interval: Double
    /// The longest wait between attempts, in seconds.
    public let maxDelay: Double
    /// How the first failure's time is shown (`12:01`): local time, unless a test fixes it.
    let timeZone: TimeZone

    /// Failures in a row, the time of the first (Unix milliseconds), and the last one's message.
    private(set) var failures = 0
    private var sinceMs: Int64 = 0
    private var lastMessage: String?

    public init(roomID: String, bucket: String, interval: Double, maxDelay: Double = 60, timeZone: TimeZone = .current) {
        self.roomID = roomID
        self.bucket = bucket
        self.interval = interval
        self.maxDelay = max(maxDelay, interval)
        self.timeZone = timeZone
    }

    /// Records a failed attempt.
    /// - Returns: the line to show, and the seconds to wait before the next attempt.
    public mutating func failed(_ error: any Error, nowMs: Int64) -> (report: String, delay: Double) {
        let message = ClientError(describing: error).message
        if failures == 0 { sinceMs = nowMs }
        failures += 1
        let delay = min(maxDelay, interval * Double(1 << min(failures, 30)))
        let retrying = "retrying in \(RoomBackoff.seconds(delay))"
        defer { lastMessage = message }
        if failures == 1 { return ("room \(roomID): bucket \(bucket): \(message) (\(retrying))", delay) }
        let count = "\(failures) times since \(clockTime(sinceMs))"
        if message != lastMessage { return ("room \(roomID): bucket \(bucket): \(message) (\(count); \(retrying))", delay) }
        return ("room \(roomID): bucket \(bucket) \(RoomBackoff.state(of: error)) (\(count)); \(retrying)", delay)
    }

    /// Records a successful attempt.
    /// - Returns: the line announcing the recovery, if the room was failing.
    public mutating func succeeded(nowMs: Int64) -> String? {
        guard failures > 0 else { return nil }
        defer {
            failures = 0
            lastMessage = nil
        }
        return "room \(roomID): bucket \(bucket) works again (after failing \(failures == 1 ? "once" : "\(failures) times") since \(clockTime(sinceMs)))"
    }

    /// What the bucket is doing, in a few words.
    static func state(of error: any Error) -> String {
        switch ClientError(describing: error).bucketFailure {
        case .transient?, .unreachable?: return "unreachable"
        case .badCredentials?: return "refusing the credentials"
        case .accessDenied?: return "denying access"
        case .noSuchBucket?: return "missing"
        case .clockSkew?: return "refusing this computer's clock"
        default: return "failing"
        }
    }

    func clockTime(_ ms: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.hour, .minute], from: Date(timeIntervalSince1970: Double(ms) / 1000))
        return String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
    }

    /// `8 s`, `0.4 s`.
    static func seconds(_ value: Double) -> String {
        value >= 10 || value == value.rounded() ? "\(Int(value.rounded())) s" : String(format: "%.1f s", value)
    }
}
