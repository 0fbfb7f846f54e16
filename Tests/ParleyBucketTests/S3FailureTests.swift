import Foundation
import ParleyTesting
import Synchronization
import Testing

@testable import ParleyBucket

/// Failures a user meets that need no server: an endpoint that cannot be reached (quick, and in words that say what
/// to check), and reading a refusal.
@Suite struct S3OfflineFailureTests {
    /// A store with the real retry settings: what a user gets.
    func store(endpoint: String) throws -> S3Store {
        try S3Store(
            configuration: S3Configuration(
                bucket: "parley-test", region: "us-east-1", endpoint: endpoint,
                credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret")))
    }

    /// The attempts a request made: a failure that retries is a failure that waits (up to a minute with the real settings).
    final class Attempts: BucketRequestObserver {
        let count = Mutex(0)
        func attemptStarted(location: String, attempt: Int, of maxAttempts: Int, after problem: String?) { count.withLock { $0 += 1 } }
        func requestEnded(location: String) {}
    }

    @Test func `a port where nothing listens is given up on after one quick retry, saying it cannot connect and what to check`() async throws {
        let endpoint = S3TestServer.closedEndpoint()
        let attempts = Attempts()
        let error = await S3Store.$observer.withValue(attempts) {
            await #expect(throws: BucketError.self) { _ = try await store(endpoint: endpoint).listAll(prefix: "rooms/") }
        }
        #expect(attempts.count.withLock { $0 } == 2)
        #expect(error?.kind == .unreachable)
        #expect(error?.message.hasPrefix("Cannot connect to \(endpoint) (connection refused") == true, "\(String(describing: error))")
        #expect(error?.message.contains("AWS_ENDPOINT_URL") == true)
    }

    @Test func `a host name that does not resolve is given up on after one quick retry, naming the name`() async throws {
        let attempts = Attempts()
        let error = await S3Store.$observer.withValue(attempts) {
            await #expect(throws: BucketError.self) {
                _ = try await store(endpoint: "http://parley-no-such-host.invalid:9000").get(key: "rooms/a", maxBytes: 10)
            }
        }
        #expect(attempts.count.withLock { $0 } == 2)
        #expect(error?.kind == .unreachable)
        #expect(error?.message.contains("parley-no-such-host.invalid") == true, "\(String(describing: error))")
        #expect(error?.message.contains("does not resolve") == true, "\(String(describing: error))")
    }

    @Test func `a server's words reach an error without control characters, and cut short`() throws {
        let store = try store(endpoint: S3TestServer.closedEndpoint())
        let message = "\u{1B}]0;pwned\u{07}\u{1B}[2J" + String(repeating: "x", count: 10_000)
        let body = Array("<Error><Code>Weird\u{1B}[31m</Code><Message>\(message)</Message></Error>".utf8)
        let error = store.failure(S3Store.Response(status: 400, headers: [:], body: body), action: "read k", permission: "s3:GetObject")
        #expect(!error.message.unicodeScalars.contains { $0.value < 0x20 }, "\(error.message)")
        #expect(error.message.contains("Weird?[31m") && error.message.contains("?]0;pwned??[2J"))
        #expect(error.message.count < 600)
    }

    @Test func `a clock's distance from the server's is read from the refusal`() throws {
        let store = try store(endpoint: S3TestServer.closedEndpoint())
        let body = Array(
            "<Error><Code>RequestTimeTooSkewed</Code><RequestTime>20250601T120000Z</RequestTime><ServerTime>2025-06-01T12:20:00Z</ServerTime></Error>".utf8)
        #expect(store.skew(error: body) == "20 minutes behind")
        #expect(store.skew(error: Array("<Error><Code>RequestTimeTooSkewed</Code></Error>".utf8)) == "too far from")
    }
}

/// Refusals answered by a server: each says which it is and what to do, including for a lookup, whose answer has no
/// body to say why.
@Suite(.enabled(if: S3TestServer.isAvailable)) struct S3RefusalTests {
    enum Operation: String, CaseIterable, Sendable {
        case write, read, lookUp, list

        func run(_ store: S3Store) async throws(BucketError) {
            switch self {
            case .write: _ = try await store.putIfAbsent(key: "refused", bytes: [1], retention: nil)
            case .read: _ = try await store.get(key: "refused", maxBytes: 10)
            case .lookUp: _ = try await store.head(key: "refused")
            case .list: _ = try await store.listAll(prefix: "refused")
            }
        }
    }

    static let keyID = ProcessInfo.processInfo.environment["PARLEY_TEST_S3_KEY_ID"] ?? ""

    @Test(arguments: Operation.allCases)
    func `a wrong secret is reported as such, naming AWS_SECRET_ACCESS_KEY`(operation: Operation) async throws {
        let store = try S3TestServer.store(
            prefix: "", checkingSignatures: true, credentials: AWSCredentials(accessKeyID: Self.keyID, secretAccessKey: "wrong-secret"))
        let error = await #expect(throws: BucketError.self) { try await operation.run(store) }
        #expect(error?.kind == .badCredentials)
        #expect(error?.message.contains("SignatureDoesNotMatch") == true, "\(String(describing: error))")
        #expect(error?.message.contains("Check AWS_SECRET_ACCESS_KEY") == true, "\(String(describing: error))")
    }

    @Test(arguments: Operation.allCases)
    func `an unknown access key is reported as such, naming AWS_ACCESS_KEY_ID`(operation: Operation) async throws {
        let store = try S3TestServer.store(
            prefix: "", checkingSignatures: true, credentials: AWSCredentials(accessKeyID: "AKIAUNKNOWN000000000", secretAccessKey: "wrong-secret"))
        let error = await #expect(throws: BucketError.self) { try await operation.run(store) }
        #expect(error?.kind == .badCredentials)
        #expect(error?.message.contains("knows no access key AKIAUNKNOWN000000000") == true, "\(String(describing: error))")
        #expect(error?.message.contains("Check AWS_ACCESS_KEY_ID") == true)
    }

    @Test func `a write without permission names the permission it needs`() async throws {
        let environment = ProcessInfo.processInfo.environment
        let reader = AWSCredentials(
            accessKeyID: try #require(environment["PARLEY_TEST_S3_READER_KEY_ID"]), secretAccessKey: try #require(environment["PARLEY_TEST_S3_READER_SECRET"]))
        let store = try S3TestServer.store(prefix: "", checkingSignatures: true, credentials: reader)
        let error = await #expect(throws: BucketError.self) { try await Operation.write.run(store) }
        #expect(error?.kind == .accessDenied)
        #expect(error?.message.contains("AccessDenied") == true, "\(String(describing: error))")
        #expect(error?.message.contains("Give it the s3:PutObject permission on arn:aws:s3:::parley-auth/*") == true, "\(String(describing: error))")
    }

    @Test func `a lookup in a bucket that does not exist says so rather than finding nothing`() async throws {
        let store = try S3TestServer.store(bucket: "parley-no-such-bucket")
        let error = await #expect(throws: BucketError.self) { try await Operation.lookUp.run(store) }
        #expect(error?.kind == .noSuchBucket)
        #expect(error?.message.contains("the bucket parley-no-such-bucket does not exist") == true, "\(String(describing: error))")
    }

    @Test func `a lookup refused for a wrong clock says to set the clock right`() async throws {
        let prefix = S3TestServer.freshPrefix()
        let store = try S3TestServer.store(prefix: prefix, throughProxy: true)
        let path = String(prefix.dropLast())
        try await S3TestServer.inject([
            .init("HEAD", path: path, "status:403:RequestTimeTooSkewed"), .init("GET", path: path, "status:403:RequestTimeTooSkewed"),
        ])
        let error = await #expect(throws: BucketError.self) { try await Operation.lookUp.run(store) }
        #expect(error?.kind == .clockSkew)
        #expect(error?.message.contains("Set the clock right") == true, "\(String(describing: error))")
    }
}
