import Foundation
import ParleyBucket

/// What to tell the user of one room's failures while a node keeps it in step (the waits are ``BucketSchedule``'s):
/// the first failure in full, the same failure again as a count, and the recovery once.
public struct RoomBackoff: Sendable {
    public let roomID: String
    public let bucket: String
    /// How the first failure's time is shown (`12:01`): local time, unless a test fixes it.
    let timeZone: TimeZone

    /// Failures in a row, the time of the first (Unix milliseconds), and the last one's message.
    private(set) var failures = 0
    private var sinceMs: Int64 = 0
    private var lastMessage: String?

    public init(roomID: String, bucket: String, timeZone: TimeZone = .current) {
        self.roomID = roomID
        self.bucket = bucket
        self.timeZone = timeZone
    }

    /// Records a failed attempt, after which nothing is tried for `delayMs`.
    /// - Returns: the line to show.
    public mutating func failed(_ error: any Error, nowMs: Int64, delayMs: Int64) -> String {
        let message = ClientError(describing: error).message
        if failures == 0 { sinceMs = nowMs }
        failures += 1
        let retrying = "retrying in \(RoomBackoff.seconds(Double(delayMs) / 1000))"
        defer { lastMessage = message }
        if failures == 1 { return "room \(roomID): bucket \(bucket): \(message) (\(retrying))" }
        let count = "\(failures) times since \(clockTime(sinceMs))"
        if message != lastMessage { return "room \(roomID): bucket \(bucket): \(message) (\(count); \(retrying))" }
        return "room \(roomID): bucket \(bucket) \(RoomBackoff.state(of: error)) (\(count)); \(retrying)"
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
