import Foundation
import ParleyTesting
import Testing

@testable import ParleyBucket

/// The S3 store against moto: signatures checked by an independent implementation, the errors a user meets, and
/// faults injected by scripts/fault_proxy.py.
@Suite(.enabled(if: S3TestServer.isAvailable)) struct S3StoreTests {
    // MARK: Signatures and errors

    @Test("A server that checks signatures accepts ours for writes, reads, lookups and listings")
    func signaturesVerify() async throws {
        // This server's own check mishandles a / in a listing's prefix and a + or = in a key (boto3's requests
        // fail the same way), so the names avoid them; a space and ~ still test the encoding.
        let store = try S3TestServer.store(prefix: "", checkingSignatures: true)
        let key = "sig-\(UUID().uuidString.lowercased())/a b~c.jsonl"
        #expect(try await store.putIfAbsent(key: key, bytes: Array("signed\n".utf8), retention: nil) == .created)
        #expect(try await store.putIfAbsent(key: key, bytes: Array("signed\n".utf8), retention: nil) == .alreadyIdentical)
        #expect(try await store.get(key: key, maxBytes: 100) == Array("signed\n".utf8))
        #expect(try await store.head(key: key)?.size == 7)
        let listed = try await store.listAll(prefix: String(key.prefix(while: { $0 != "/" })))
        #expect(listed.map(\.key) == [key])
    }

    @Test("A missing bucket is named as such")
    func missingBucket() async throws {
        let store = try S3TestServer.store(bucket: "parley-no-such-bucket")
        do {
            _ = try await store.putIfAbsent(key: "a", bytes: [1], retention: nil)
            Issue.record("wrote to a missing bucket")
        } catch {
            #expect(error.kind == .noSuchBucket)
            #expect(error.message.contains("parley-no-such-bucket does not exist"))
        }
    }

    @Test(
        "Access denied and clock skew are reported with what to do",
        arguments: [("AccessDenied", BucketError.Kind.accessDenied, "may not"), ("RequestTimeTooSkewed", .clockSkew, "clock")])
    func refusals(code: String, kind: BucketError.Kind, advice: String) async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), "status:403:\(code)")])
        do {
            _ = try await store.get(key: "a", maxBytes: 10)
            Issue.record("no error")
        } catch {
            #expect(error.kind == kind)
            #expect(error.message.contains(advice))
        }
    }

    @Test("Object Lock retention is requested on writes when configured")
    func retention() async throws {
        let store = try S3TestServer.store(bucket: "parley-locked")
        let retention = Retention(mode: .governance, days: 3)
        #expect(try await store.putIfAbsent(key: "locked", bytes: Array("kept".utf8), retention: retention) == .created)
        let response = try await store.perform(method: .HEAD, key: "locked", maxBytes: 0)
        #expect(response.headers.first(name: "x-amz-object-lock-mode") == "GOVERNANCE")
        let until = try #require(response.headers.first(name: "x-amz-object-lock-retain-until-date"))
        #expect(until.hasPrefix(S3Store.isoDate(unixSeconds: Int64(Date().timeIntervalSince1970) + 3 * 86400).prefix(10)))
    }

    // MARK: Faults

    @Test("503 SlowDown and 500 bursts are retried until the request succeeds")
    func retriesServerErrors() async throws {
        let prefix = S3TestServer.freshPrefix()
        let path = String(prefix.dropLast())
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        try await S3TestServer.inject([
            .init("PUT", path: path, "status:503:SlowDown", count: 3), .init("GET", path: path, "status:500:InternalError", count: 4),
        ])
        #expect(try await store.putIfAbsent(key: "k", bytes: Array("body".utf8), retention: nil) == .created)
        #expect(try await store.get(key: "k", maxBytes: 10) == Array("body".utf8))
        try await S3TestServer.inject([.init("GET", path: path, "status:503:SlowDown", count: 2)])
        #expect(try await store.listAll(prefix: "").map(\.key) == ["k"])
        #expect(try await S3TestServer.pendingFaults(path: path) == 0, "every injected fault happened")
    }

    @Test("A connection reset mid-body and a short body are retried; the bytes returned are whole")
    func brokenBodies() async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        let body = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        _ = try await store.putIfAbsent(key: "k", bytes: body, retention: nil)
        for action in ["reset-body", "short-body"] {
            try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), action, count: 2)])
            #expect(try await store.get(key: "k", maxBytes: 20_000) == body, "\(action)")
            #expect(try await S3TestServer.pendingFaults(path: String(prefix.dropLast())) == 0, "both \(action) faults happened")
        }
    }

    @Test("A 1 GiB answer to a read, its length announced or streamed in chunks, is refused as too large after a bounded part of it")
    func hugeAnswers() async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        let path = String(prefix.dropLast())
        _ = try await store.putIfAbsent(key: "small", bytes: Array("a small object".utf8), retention: nil)
        for action in ["huge-body", "huge-chunked"] {
            try await S3TestServer.inject([.init("GET", path: path + "/small", "\(action):\(1 << 30)")])
            // Not retried: a second attempt would reach the real object and succeed.
            await #expect(throws: BucketError.Kind.tooLarge, "\(action)") { try await kind { try await store.get(key: "small", maxBytes: 1 << 20) } }
            #expect(try await S3TestServer.pendingFaults(path: path) == 0, "the \(action) fault happened")
        }
        // What the reader let in across both answers: the limit and what the sockets buffered, nowhere near 1 GiB.
        let sent = try await S3TestServer.hugeBytesSent(path: path)
        #expect(sent < 64 << 20, "\(sent) bytes sent")
        // The object itself reads as before once the server answers truthfully.
        #expect(try await store.get(key: "small", maxBytes: 1 << 20) == Array("a small object".utf8))
    }

    @Test("A write applied but whose answer was lost (dropped, or timed out) succeeds once, without a second object")
    func ambiguousWrites() async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        let path = String(prefix.dropLast())
        try await S3TestServer.inject([.init("PUT", path: path + "/dropped", "drop-response")])
        #expect(try await store.putIfAbsent(key: "dropped", bytes: Array("one".utf8), retention: nil) == .alreadyIdentical)
        var configuration = store.configuration
        configuration.requestTimeout = 1
        let impatient = try S3Store(configuration: configuration)
        try await S3TestServer.inject([.init("PUT", path: path + "/timed-out", "hang")])
        #expect(try await impatient.putIfAbsent(key: "timed-out", bytes: Array("two".utf8), retention: nil) == .alreadyIdentical)
        #expect(try await store.listAll(prefix: "").map(\.key) == ["dropped", "timed-out"])
    }

    @Test("When every attempt fails, the error says so and is marked transient")
    func givesUp() async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true, maxAttempts: 3)
        try await S3TestServer.inject([.init("GET", path: String(prefix.dropLast()), "status:503:SlowDown", count: 3)])
        do {
            _ = try await store.get(key: "k", maxBytes: 10)
            Issue.record("no error")
        } catch {
            #expect(error.kind == .transient)
            #expect(error.message.contains("after 3 attempts"))
        }
    }
}
