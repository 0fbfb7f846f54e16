import AsyncHTTPClient
import Foundation
import NIOCore
import ParleyBucket
import ParleyCore

/// The S3 servers `scripts/s3-test-servers` starts for the tests (moto, with the fault proxy in front), found
/// through the `PARLEY_TEST_S3_*` environment variables the test script exports.
public enum S3TestServer {
    static let environment = ProcessInfo.processInfo.environment
    public static let bucket = "parley-test"

    /// Whether the servers are running. `scripts/test` always starts them, and fails if any test was skipped.
    public static var isAvailable: Bool {
        let running = environment["PARLEY_TEST_S3_ENDPOINT"] != nil
        precondition(running || environment["PARLEY_REQUIRE_S3"] == nil, "PARLEY_REQUIRE_S3 is set but no S3 test server is running")
        return running
    }

    static var endpoint: String { environment["PARLEY_TEST_S3_ENDPOINT"]! }
    static var proxy: String { environment["PARLEY_TEST_S3_PROXY"]! }
    /// The server that checks signatures, with its bucket.
    static var authEndpoint: String { environment["PARLEY_TEST_S3_AUTH_ENDPOINT"]! }
    public static let authBucket = "parley-auth"

    /// The credentials, as the standard AWS variables, for a `parley` process.
    public static var awsEnvironment: [String: String] {
        [
            "AWS_ACCESS_KEY_ID": environment["PARLEY_TEST_S3_KEY_ID"] ?? "", "AWS_SECRET_ACCESS_KEY": environment["PARLEY_TEST_S3_SECRET"] ?? "",
            "AWS_REGION": "us-east-1",
        ]
    }

    /// An endpoint where nothing listens: a port on 127.0.0.1 that was free a moment ago.
    public static func closedEndpoint() -> String {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        return "http://127.0.0.1:\(UInt16(bigEndian: address.sin_port))"
    }

    /// A fresh prefix of the test bucket, so tests never see each other's objects.
    public static func freshPrefix() -> String { "t-\(UUID().uuidString.lowercased())/" }

    /// The bucket URL of a prefix, naming the endpoint (direct, or through the fault proxy).
    public static func url(prefix: String, throughProxy: Bool = false) -> String {
        "s3://\(bucket)/\(prefix)?endpoint=\(throughProxy ? proxy : endpoint)"
    }

    /// An S3 store on a fresh prefix.
    /// - Parameters:
    ///   - checkingSignatures: on the server that checks signatures (whose listings cannot have a `/` in the prefix).
    public static func store(
        prefix: String = freshPrefix(), throughProxy: Bool = false, checkingSignatures: Bool = false, credentials: AWSCredentials? = nil,
        maxAttempts: Int = 6, bucket: String? = nil
    ) throws -> S3Store {
        var configuration = S3Configuration(
            bucket: bucket ?? (checkingSignatures ? authBucket : S3TestServer.bucket), prefix: prefix, region: "us-east-1",
            endpoint: checkingSignatures ? authEndpoint : throughProxy ? proxy : endpoint,
            credentials: credentials
                ?? AWSCredentials(accessKeyID: environment["PARLEY_TEST_S3_KEY_ID"] ?? "", secretAccessKey: environment["PARLEY_TEST_S3_SECRET"] ?? ""))
        configuration.maxAttempts = maxAttempts
        configuration.baseDelay = 0.01
        configuration.maxDelay = 0.05
        configuration.requestTimeout = 5
        return try S3Store(configuration: configuration)
    }

    /// Writes an object past every check a Parley store makes on keys: for objects no client would write (a key with
    /// control characters), as someone else's tool might. The main server does not check signatures.
    public static func putUnchecked(prefix: String, key: String, bytes: [UInt8]) async throws {
        let path = Array((bucket + "/" + prefix + key).utf8).map { byte -> String in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "/"):
                String(UnicodeScalar(byte))
            default: String(format: "%%%02X", byte)
            }
        }.joined()
        var request = HTTPClientRequest(url: "\(endpoint)/\(path)")
        request.method = .PUT
        request.body = .bytes(ByteBuffer(bytes: bytes))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        guard response.status.code == 200 else { throw BucketError(.badResponse, "the S3 test server answered \(response.status.code)") }
    }

    /// A fault rule of scripts/fault_proxy.py: the next `count` requests with this method whose path contains
    /// `path` get `action`.
    public struct Fault: Sendable {
        public var method: String
        public var path: String
        public var action: String
        public var count: Int

        public init(_ method: String, path: String = "", _ action: String, count: Int = 1) {
            self.method = method
            self.path = path
            self.action = action
            self.count = count
        }
    }

    /// Adds fault rules to the proxy. Each test uses its own prefix in `path`, so tests running at once do not
    /// take each other's faults.
    public static func inject(_ faults: [Fault]) async throws {
        let rules = faults.map { "{\"method\":\"\($0.method)\",\"path\":\"\($0.path)\",\"action\":\"\($0.action)\",\"count\":\($0.count)}" }
        var request = HTTPClientRequest(url: "\(proxy)/__faults")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "[\(rules.joined(separator: ","))]"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        guard response.status.code == 204 else { throw BucketError(.badResponse, "the fault proxy answered \(response.status.code)") }
    }

    /// How many injections the proxy's rules whose path contains `path` have not made yet: 0 once every fault a test
    /// asked for has happened.
    public static func pendingFaults(path: String) async throws -> Int {
        try await faultStatus(path: path, "pending")
    }

    /// How many body bytes the proxy's `huge-body` and `huge-chunked` rules whose path contains `path` sent before
    /// the reader hung up.
    public static func hugeBytesSent(path: String) async throws -> Int {
        try await faultStatus(path: path, "sent")
    }

    static func faultStatus(path: String, _ field: String) async throws -> Int {
        var components = URLComponents(string: "\(proxy)/__faults")!
        components.queryItems = [URLQueryItem(name: "path", value: path)]
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: components.string!), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 16)
        guard response.status.code == 200, case .integer(let value)? = try JSONParser().parse(Array(buffer: body)).objectValue?[field] else {
            throw BucketError(.badResponse, "the fault proxy answered \(response.status.code)")
        }
        return Int(value)
    }
}
