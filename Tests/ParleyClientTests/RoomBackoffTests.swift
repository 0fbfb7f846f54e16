import Foundation
import ParleyBucket
import ParleyClient
import Testing

@Suite struct RoomBackoffTests {
    /// 12:01:00 UTC on some day, in Unix milliseconds.
    let noon: Int64 = 1_750_000_000_000 - 1_750_000_000_000 % 86_400_000 + 12 * 3_600_000 + 60_000
    let unreachable = ClientError(BucketError(.unreachable, "Cannot connect to http://127.0.0.1:9 (connection refused)."))

    func backoff() -> RoomBackoff {
        RoomBackoff(roomID: "team", bucket: "s3://x/", timeZone: TimeZone(identifier: "UTC")!)
    }

    @Test func `the first failure is told in full, the same failure again as a count, with the wait`() {
        var backoff = backoff()
        #expect(
            backoff.failed(unreachable, nowMs: noon, delayMs: 2_000)
                == "room team: bucket s3://x/: Cannot connect to http://127.0.0.1:9 (connection refused). (retrying in 2 s)")
        #expect(
            backoff.failed(unreachable, nowMs: noon + 2_000, delayMs: 4_000) == "room team: bucket s3://x/ unreachable (2 times since 12:01); retrying in 4 s")
        #expect(
            backoff.failed(unreachable, nowMs: noon + 6_000, delayMs: 400) == "room team: bucket s3://x/ unreachable (3 times since 12:01); retrying in 0.4 s")
    }

    @Test func `a different failure is told in full, with the count so far`() {
        var backoff = backoff()
        _ = backoff.failed(unreachable, nowMs: noon, delayMs: 2_000)
        let denied = ClientError(BucketError(.accessDenied, "s3://x/ refused to list rooms/team/logs/ (HTTP 403 AccessDenied)."))
        #expect(
            backoff.failed(denied, nowMs: noon + 2_000, delayMs: 4_000)
                == "room team: bucket s3://x/: s3://x/ refused to list rooms/team/logs/ (HTTP 403 AccessDenied). (2 times since 12:01; retrying in 4 s)")
        #expect(
            backoff.failed(denied, nowMs: noon + 6_000, delayMs: 8_000) == "room team: bucket s3://x/ denying access (3 times since 12:01); retrying in 8 s")
    }

    @Test func `a recovery is told once, and the next failure is told in full again`() {
        var backoff = backoff()
        #expect(backoff.succeeded(nowMs: noon) == nil)
        _ = backoff.failed(unreachable, nowMs: noon, delayMs: 2_000)
        _ = backoff.failed(unreachable, nowMs: noon + 2_000, delayMs: 4_000)
        #expect(backoff.succeeded(nowMs: noon + 6_000) == "room team: bucket s3://x/ works again (after failing 2 times since 12:01)")
        #expect(backoff.succeeded(nowMs: noon + 7_000) == nil)
        #expect(backoff.failed(unreachable, nowMs: noon + 8_000, delayMs: 2_000).hasPrefix("room team: bucket s3://x/: Cannot connect"))
    }
}
