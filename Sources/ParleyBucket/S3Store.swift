import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ParleyCore

/// Where and how to reach an S3-compatible bucket.
public struct S3Configuration: Sendable, Equatable {
    public var bucket: String
    /// Prepended to every key: empty, or ending in `/`.
    public var prefix: String
    public var region: String
    /// `http(s)://host[:port]`; AWS's regional endpoint when `nil`.
    public var endpoint: String?
    /// `/bucket/key` rather than `bucket.host/key`; the default with a custom endpoint, as MinIO and moto expect.
    public var pathStyle: Bool
    public var credentials: AWSCredentials
    public var maxAttempts = 6
    /// First retry delay, in seconds; doubles per attempt up to `maxDelay`, with full jitter.
    public var baseDelay = 0.1
    public var maxDelay = 5.0
    /// Seconds a request may take, body included.
    public var requestTimeout: Int64 = 30

    public init(bucket: String, prefix: String = "", region: String, endpoint: String? = nil, pathStyle: Bool? = nil, credentials: AWSCredentials) {
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.endpoint = endpoint
        self.pathStyle = pathStyle ?? (endpoint != nil)
        self.credentials = credentials
    }
}

/// Someone waiting on S3 requests (a person at a terminal): told when each attempt starts and when a request ends.
public protocol BucketRequestObserver: Sendable {
    /// Attempt `attempt` (from 1) of at most `maxAttempts` to reach `location` starts; `problem` says why the one before
    /// failed.
    func attemptStarted(location: String, attempt: Int, of maxAttempts: Int, after problem: String?)
    /// A request to `location` has ended, answered or given up.
    func requestEnded(location: String)
}

/// An S3-compatible bucket over HTTP, signed with SigV4.
///
/// Retries transient failures (5xx, SlowDown, timeouts, reset connections, short bodies) with exponential backoff
/// and full jitter. Writes are `If-None-Match: *`, so a write whose answer was lost is retried safely: the retry
/// finds the identical object and reports success.
public struct S3Store: ObjectStore {
    public let configuration: S3Configuration
    let signer: SigV4Signer
    let host: String
    let scheme: String
    /// Unix time in seconds, for signatures.
    let clock: @Sendable () -> Int64

    /// One client for the process: its connections are reused by every store.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(30)))
        // Otherwise a refused connection is retried inside the client until the connect timeout, and each of our
        // attempts took 10 s of silence before it failed: a wrong endpoint cost a minute. Our own loop decides.
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Told about every attempt of every request made in this task and its child tasks: the command line uses it to
    /// say, on a terminal, what a slow bucket is doing.
    @TaskLocal public static var observer: (any BucketRequestObserver)?

    public init(configuration: S3Configuration, clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) throws(BucketError) {
        self.configuration = configuration
        self.clock = clock
        signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)
        let endpoint = configuration.endpoint ?? "https://s3.\(configuration.region).amazonaws.com"
        guard let components = URLComponents(string: endpoint), let scheme = components.scheme, scheme == "http" || scheme == "https",
            let endpointHost = components.host, !endpointHost.isEmpty
        else { throw BucketError(.invalidURL, "The S3 endpoint \(endpoint) is not an http(s)://host[:port] URL.") }
        self.scheme = scheme
        let hostPort = components.port.map { "\(endpointHost):\($0)" } ?? endpointHost
        host = configuration.pathStyle ? hostPort : "\(configuration.bucket).\(hostPort)"
    }

    public var location: String { "s3://\(configuration.bucket)/\(configuration.prefix)" }

    // MARK: ObjectStore

    public func putIfAbsent(key: String, bytes: [UInt8], retention: Retention?) async throws(BucketError) -> PutOutcome {
        try ObjectKey.check(key)
        var headers = [("if-none-match", "*"), ("content-type", key.hasSuffix(".gz") ? "application/gzip" : "application/octet-stream")]
        if let retention {
            let until = clock() + Int64(retention.days) * 86400
            headers += [
                ("x-amz-object-lock-mode", retention.mode.rawValue),
                ("x-amz-object-lock-retain-until-date", S3Store.isoDate(unixSeconds: until)),
                // Object Lock writes must carry a checksum of the body.
                ("content-md5", Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()),
            ]
        }
        let response = try await perform(method: .PUT, key: key, body: bytes, headers: headers, maxBytes: 1 << 16)
        switch response.status {
        case 200, 201:
            return .created
        case 412:
            // Something is there: ours from an attempt whose answer was lost, or another writer's.
            do {
                return try await get(key: key, maxBytes: bytes.count) == bytes ? .alreadyIdentical : .conflict
            } catch  where error.kind == .tooLarge {
                return .conflict
            }
        default:
            throw failure(response, action: "write \(key)", permission: "s3:PutObject")
        }
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try ObjectKey.check(key)
        let response = try await perform(method: .GET, key: key, maxBytes: maxBytes)
        switch response.status {
        case 200: return response.body
        case 404: throw BucketError(.notFound, "No object \(key) in \(location).")
        default: throw failure(response, action: "read \(key)", permission: "s3:GetObject")
        }
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try ObjectKey.check(key)
        let response = try await perform(method: .HEAD, key: key, maxBytes: 0)
        if response.status == 200 {
            return ObjectInfo(key: key, size: response.headers.first(name: "content-length").flatMap { Int64($0) } ?? 0)
        }
        // A HEAD answer has no body, so no error code: a 404 could be a missing bucket, a 403 any of bad
        // credentials, a wrong clock or a missing permission. A GET of the first byte says which.
        let probe: Response
        do {
            probe = try await perform(method: .GET, key: key, headers: [("range", "bytes=0-0")], maxBytes: 1)
        } catch  where error.kind == .tooLarge {
            // A server that ignores Range: the object is there (it appeared since the HEAD); its size is not known.
            throw BucketError(.transient, "\(location) answered a lookup of \(key) inconsistently; try again.")
        }
        switch probe.status {
        case 200, 206:
            let total = probe.headers.first(name: "content-range")?.split(separator: "/").last.flatMap { Int64($0) }
            return ObjectInfo(key: key, size: total ?? Int64(probe.body.count))
        case 404 where ErrorXML(probe.body).code != "NoSuchBucket":
            return nil
        default:
            throw failure(probe, action: "look up \(key)", permission: "s3:GetObject")
        }
    }

    public func delete(key: String) async throws(BucketError) {
        try ObjectKey.check(key)
        let response = try await perform(method: .DELETE, key: key, maxBytes: 1 << 16)
        guard [200, 204, 404].contains(response.status), ErrorXML(response.body).code != "NoSuchBucket" else {
            throw failure(response, action: "delete \(key)", permission: "s3:DeleteObject")
        }
    }

    public func list(prefix: String, startAfter: String?, delimiter: String?, continuation: String?, maxKeys: Int) async throws(BucketError)
        -> ListPage
    {
        try ObjectKey.checkPrefix(prefix)
        var query = [("list-type", "2"), ("prefix", configuration.prefix + prefix), ("max-keys", String(maxKeys)), ("encoding-type", "url")]
        if let startAfter { query.append(("start-after", configuration.prefix + startAfter)) }
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuation { query.append(("continuation-token", continuation)) }
        let response = try await perform(method: .GET, key: nil, query: query, maxBytes: 16 << 20)
        guard response.status == 200 else { throw failure(response, action: "list \(prefix)", permission: "s3:ListBucket") }
        let listing = ListingXML(response.body)
        let strip = configuration.prefix.count
        func unprefixed(_ key: String) -> String? {
            guard let decoded = key.removingPercentEncoding, decoded.hasPrefix(configuration.prefix) else { return nil }
            return String(decoded.dropFirst(strip))
        }
        let objects = listing.objects.compactMap { object in unprefixed(object.key).map { ObjectInfo(key: $0, size: object.size) } }
        return ListPage(
            objects: objects, commonPrefixes: listing.commonPrefixes.compactMap(unprefixed),
            continuation: listing.isTruncated ? listing.nextContinuationToken : nil)
    }

    // MARK: Requests

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// Sends a signed request, retrying what is worth retrying, and reads at most `maxBytes` of the body.
    func perform(
        method: HTTPMethod, key: String?, query: [(String, String)] = [], body: [UInt8] = [], headers extra: [(String, String)] = [],
        maxBytes: Int
    ) async throws(BucketError) -> Response {
        var path = configuration.pathStyle ? "/\(configuration.bucket)" : ""
        if let key { path += "/" + configuration.prefix + key } else if !configuration.pathStyle { path = "/" }
        let payloadHash = SigV4Signer.sha256Hex(body)
        let attempts = max(1, configuration.maxAttempts)
        let observer = S3Store.observer
        defer { observer?.requestEnded(location: location) }
        var lastError = BucketError(.transient, "No attempt was made.")
        var unreachable = 0
        for attempt in 0..<attempts {
            if attempt > 0 {
                let ceiling = min(configuration.maxDelay, configuration.baseDelay * Double(1 << min(attempt, 20)))
                try? await Task.sleep(nanoseconds: UInt64(Double.random(in: 0...ceiling) * 1e9))
            }
            observer?.attemptStarted(location: location, attempt: attempt + 1, of: attempts, after: attempt > 0 ? lastError.message : nil)
            do {
                let response = try await send(method: method, path: path, query: query, body: body, extra: extra, payloadHash: payloadHash, maxBytes: maxBytes)
                if let transient = S3Store.transientProblem(response) {
                    lastError = BucketError(.transient, "\(location) answered \(transient) (after \(attempt + 1) attempts).")
                    continue
                }
                return response
            } catch let error as BucketError {
                guard error.kind == .transient else { throw error }
                lastError = BucketError(.transient, "\(error.message) (after \(attempt + 1) attempts)")
            } catch {
                if Task.isCancelled { throw BucketError(.transient, "The request to \(location) was cancelled.") }
                guard let (failure, retry) = connectionFailure(error) else {
                    lastError = BucketError(.transient, "Cannot reach \(location): \(error) (after \(attempt + 1) attempts).")
                    continue
                }
                // A refused connection or a name that does not resolve is not the passing trouble a 503 is: one
                // quick retry (a server restarting) and no more. A connect timeout has already waited long enough.
                unreachable += 1
                lastError = failure
                if !retry || unreachable > 1 { throw failure }
            }
        }
        throw lastError
    }

    /// What went wrong when no connection could be made, in the user's terms, and whether one more quick attempt
    /// is worth it; `nil` for any other error.
    func connectionFailure(_ error: any Error) -> (BucketError, retry: Bool)? {
        let endpoint = "\(scheme)://\(host)"
        let check =
            "Check the endpoint (endpoint= in the bucket URL, AWS_ENDPOINT_URL, or AWS_REGION for AWS itself) and that the server is running and reachable from here."
        if case ChannelError.connectTimeout? = error as? ChannelError {
            return (BucketError(.unreachable, "Cannot connect to \(endpoint): it did not answer within 10 s. \(check)"), false)
        }
        switch error {
        case let error as NIOConnectionError:
            if let attempt = error.connectionErrors.first { return connectionFailure(attempt.error) }
            return (BucketError(.unreachable, "Cannot connect to \(endpoint): the name \(error.host) does not resolve (DNS lookup failed). \(check)"), true)
        case let error as IOError:
            let reason: String
            switch error.errnoCode {
            case ECONNREFUSED: reason = "connection refused: nothing is listening there"
            case EHOSTUNREACH, ENETUNREACH: reason = "no route to the host"
            case ETIMEDOUT: reason = "the connection timed out"
            default: return nil
            }
            return (BucketError(.unreachable, "Cannot connect to \(endpoint) (\(reason)). \(check)"), error.errnoCode != ETIMEDOUT)
        case let error as HTTPClientError where error == .connectTimeout:
            return (BucketError(.unreachable, "Cannot connect to \(endpoint): it did not answer within 10 s. \(check)"), false)
        default:
            return nil
        }
    }

    func send(
        method: HTTPMethod, path: String, query: [(String, String)], body: [UInt8], extra: [(String, String)], payloadHash: String, maxBytes: Int
    ) async throws -> Response {
        let amzDate = SigV4Signer.amzDate(unixSeconds: clock())
        var signed = [("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)] + extra
        if let token = configuration.credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        let signature = signer.sign(method: method.rawValue, path: path, query: query, headers: signed, payloadHash: payloadHash, amzDate: amzDate)
        let queryString = query.map { "\(SigV4Signer.encode($0.0, keepSlash: false))=\(SigV4Signer.encode($0.1, keepSlash: false))" }.joined(separator: "&")
        var request = HTTPClientRequest(url: "\(scheme)://\(host)\(SigV4Signer.encode(path, keepSlash: true))\(queryString.isEmpty ? "" : "?" + queryString)")
        request.method = method
        for (name, value) in signed { request.headers.add(name: name, value: value) }
        request.headers.add(name: "authorization", value: signature.authorization)
        if method == .PUT {
            request.headers.add(name: "content-length", value: String(body.count))
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await S3Store.client.execute(request, timeout: .seconds(configuration.requestTimeout))
        let status = Int(response.status.code)
        // Error bodies are small XML documents; never read more than a success may hold.
        let limit = (200..<300).contains(status) ? maxBytes : 1 << 16
        let expected = response.headers.first(name: "content-length").flatMap { Int($0) }
        if method != .HEAD, let expected, expected > limit, (200..<300).contains(status) {
            throw BucketError(.tooLarge, "The object holds \(expected) bytes, over the limit of \(limit).")
        }
        var collected: [UInt8] = []
        if method != .HEAD {
            collected.reserveCapacity(min(expected ?? 0, limit))
            do {
                for try await chunk in response.body {
                    if collected.count + chunk.readableBytes > limit {
                        if (200..<300).contains(status) { throw BucketError(.tooLarge, "The object holds more than \(limit) bytes.") }
                        break
                    }
                    chunk.withUnsafeReadableBytes { collected.append(contentsOf: $0) }
                }
            } catch let error as BucketError {
                throw error
            } catch {
                throw BucketError(.transient, "The answer from \(location) broke off: \(error).")
            }
            if let expected, collected.count < expected, (200..<300).contains(status) {
                throw BucketError(.transient, "The answer from \(location) was cut short (\(collected.count) of \(expected) bytes).")
            }
        }
        return Response(status: status, headers: response.headers, body: collected)
    }

    /// The reason a response is worth retrying, if it is.
    static func transientProblem(_ response: Response) -> String? {
        // A success's body is the object: only an error's is an error document (scanning a block for one cost 80% of
        // a download's CPU).
        guard !(200..<300).contains(response.status) else { return nil }
        let code = ErrorXML(response.body).code
        if response.status >= 500 || code == "SlowDown" || code == "RequestTimeout" || code == "ConditionalRequestConflict"
            || response.status == 409
                && code == "OperationAborted"
        {
            return "\(response.status)\(code.map { " \($0)" } ?? "")"
        }
        return nil
    }

    /// The error for a refusal, saying which refusal it is and what to do about it (docs/PROTOCOL.md §13.7).
    /// - Parameter permission: the IAM action the request needs, named when access is denied.
    func failure(_ response: Response, action: String, permission: String) -> BucketError {
        let error = ErrorXML(response.body)
        let said = "\(location) refused to \(action) (HTTP \(response.status)\(error.code.map { " \($0)" } ?? ""))"
        let keyID = configuration.credentials.accessKeyID
        switch error.code {
        case "InvalidAccessKeyId":
            return BucketError(
                .badCredentials,
                "\(said): it knows no access key \(keyID). Check AWS_ACCESS_KEY_ID, and that the endpoint is the one these credentials belong to.")
        case "SignatureDoesNotMatch":
            return BucketError(
                .badCredentials,
                "\(said): the request's signature does not match the secret it holds for \(keyID). Check AWS_SECRET_ACCESS_KEY: it must be the secret of the key in AWS_ACCESS_KEY_ID."
            )
        case "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
            return BucketError(
                .badCredentials,
                "\(said): the session token is invalid or has expired. Get new temporary credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN together), or unset AWS_SESSION_TOKEN for long-term keys."
            )
        case "AuthorizationHeaderMalformed":
            let region = XMLScan(response.body).first("Region").map { " (it says \(ErrorXML.printable($0)))" } ?? ""
            return BucketError(
                .invalidURL, "\(said): the bucket is not in region \(configuration.region)\(region). Set AWS_REGION, or region= in the bucket URL.")
        case "NoSuchBucket":
            return BucketError(
                .noSuchBucket,
                "\(said): the bucket \(configuration.bucket) does not exist. Create it, or check the bucket name in the URL and the endpoint (AWS_ENDPOINT_URL, endpoint=)."
            )
        case "AccessDenied", "AllAccessDisabled":
            return BucketError(
                .accessDenied,
                "\(said): access key \(keyID) may not do that. Give it the \(permission) permission on arn:aws:s3:::\(configuration.bucket)\(permission == "s3:ListBucket" ? "" : "/\(configuration.prefix)*") (a bucket room needs s3:ListBucket, s3:GetObject and s3:PutObject)."
            )
        case "RequestTimeTooSkewed":
            return BucketError(
                .clockSkew,
                "\(said): this computer's clock is \(skew(error: response.body)) the bucket's. Set the clock right (turn on NTP: `timedatectl set-ntp true`).")
        default:
            if response.status == 301 || error.code == "PermanentRedirect" {
                let endpoint = XMLScan(response.body).first("Endpoint").map { " (it names \(ErrorXML.printable($0)))" } ?? ""
                return BucketError(
                    .invalidURL, "\(said): the bucket is in another region\(endpoint). Set AWS_REGION, or region= in the bucket URL, to the bucket's region.")
            }
            let detail = error.message.map { ": \($0)" } ?? ""
            if response.status == 403 {
                return BucketError(
                    .accessDenied, "\(said)\(detail). Check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and that they have \(permission).")
            }
            if response.status == 404 {
                return BucketError(.noSuchBucket, "\(said)\(detail). Check the bucket name in the URL and the endpoint.")
            }
            return BucketError(.badResponse, "\(said)\(detail).")
        }
    }

    /// How far this computer's clock is from the server's, from a RequestTimeTooSkewed answer.
    func skew(error body: [UInt8]) -> String {
        let scan = XMLScan(body)
        guard let request = scan.first("RequestTime").flatMap(S3Store.parseTime), let server = scan.first("ServerTime").flatMap(S3Store.parseTime)
        else { return "too far from" }
        let minutes = Int((abs(request - server) / 60).rounded())
        return "\(minutes) minute\(minutes == 1 ? "" : "s") \(request > server ? "ahead of" : "behind")"
    }

    /// Seconds since 1970 of an S3 time (`20250601T120000Z` or `2025-06-01T12:00:00Z`, fractions ignored).
    static func parseTime(_ text: String) -> Double? {
        let digits = text.prefix { $0 != "." }.filter(\.isNumber)
        guard digits.count == 14 else { return nil }
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        let fields = [0, 4, 6, 8, 10, 12, 14].map { digits.index(digits.startIndex, offsetBy: $0) }
        let values = (0..<6).compactMap { Int(digits[fields[$0]..<fields[$0 + 1]]) }
        guard values.count == 6 else { return nil }
        (components.year, components.month, components.day, components.hour, components.minute, components.second) =
            (values[0], values[1], values[2], values[3], values[4], values[5])
        return Calendar(identifier: .gregorian).date(from: components)?.timeIntervalSince1970
    }

    static func isoDate(unixSeconds: Int64) -> String {
        let date = SigV4Signer.amzDate(unixSeconds: unixSeconds)
        let day = date.prefix(8)
        let time = date.dropFirst(9).prefix(6)
        return "\(day.prefix(4))-\(day.dropFirst(4).prefix(2))-\(day.suffix(2))T\(time.prefix(2)):\(time.dropFirst(2).prefix(2)):\(time.suffix(2))Z"
    }
}

/// The few elements of an S3 XML answer we read. S3's XML is flat and machine-written; this reads elements by
/// name without a general XML parser (and needs no libxml2).
struct XMLScan {
    let text: String

    init(_ bytes: [UInt8]) { text = String(decoding: bytes, as: UTF8.self) }
    init(text: String) { self.text = text }

    /// The contents of every `<name>…</name>`, in order.
    func elements(_ name: String) -> [String] {
        var results: [String] = []
        var rest = text[...]
        let open = "<\(name)>"
        let close = "</\(name)>"
        while let start = rest.range(of: open) {
            guard let end = rest[start.upperBound...].range(of: close) else { break }
            results.append(String(rest[start.upperBound..<end.lowerBound]))
            rest = rest[end.upperBound...]
        }
        return results
    }

    func first(_ name: String) -> String? { elements(name).first.map(XMLScan.unescape) }

    static func unescape(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var result = ""
        var rest = text[...]
        while let amp = rest.firstIndex(of: "&") {
            result += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": result += "&"
            case "lt": result += "<"
            case "gt": result += ">"
            case "quot": result += "\""
            case "apos": result += "'"
            default:
                let number = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16) : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                if let number, let scalar = Unicode.Scalar(number) { result.unicodeScalars.append(scalar) }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return result + rest
    }
}

struct ErrorXML {
    var code: String?
    var message: String?

    init(_ body: [UInt8]) {
        let scan = XMLScan(body)
        code = scan.first("Code").map { ErrorXML.printable($0) }
        message = scan.first("Message").map { ErrorXML.printable($0) }
    }

    /// Text from a server, fit to go into an error a terminal shows: control characters (escape sequences) become
    /// `?`, and it is cut at `limit` characters.
    static func printable(_ text: String, limit: Int = 200) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars.prefix(limit) {
            scalars.append(scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) ? "?" : scalar)
        }
        return String(scalars) + (text.unicodeScalars.count > limit ? "…" : "")
    }
}

struct ListingXML {
    var objects: [(key: String, size: Int64)] = []
    var commonPrefixes: [String] = []
    var isTruncated = false
    var nextContinuationToken: String?

    init(_ body: [UInt8]) {
        let scan = XMLScan(body)
        for contents in scan.elements("Contents") {
            let item = XMLScan(text: contents)
            if let key = item.first("Key") { objects.append((key, item.first("Size").flatMap { Int64($0) } ?? 0)) }
        }
        for prefixes in scan.elements("CommonPrefixes") {
            if let prefix = XMLScan(text: prefixes).first("Prefix") { commonPrefixes.append(prefix) }
        }
        isTruncated = scan.first("IsTruncated") == "true"
        nextContinuationToken = scan.first("NextContinuationToken")
    }
}
