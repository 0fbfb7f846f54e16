import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
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
    static let client = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(30))))

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
            } catch where error.kind == .tooLarge {
                return .conflict
            }
        default:
            throw failure(response, action: "write \(key)")
        }
    }

    public func get(key: String, maxBytes: Int) async throws(BucketError) -> [UInt8] {
        try ObjectKey.check(key)
        let response = try await perform(method: .GET, key: key, maxBytes: maxBytes)
        switch response.status {
        case 200: return response.body
        case 404: throw BucketError(.notFound, "No object \(key) in \(location).")
        default: throw failure(response, action: "read \(key)")
        }
    }

    public func head(key: String) async throws(BucketError) -> ObjectInfo? {
        try ObjectKey.check(key)
        let response = try await perform(method: .HEAD, key: key, maxBytes: 0)
        switch response.status {
        case 200: return ObjectInfo(key: key, size: response.headers.first(name: "content-length").flatMap { Int64($0) } ?? 0)
        case 404: return nil
        default: throw failure(response, action: "look up \(key)")
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
        guard response.status == 200 else { throw failure(response, action: "list \(prefix)") }
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
        var lastError = BucketError(.transient, "No attempt was made.")
        for attempt in 0..<max(1, configuration.maxAttempts) {
            if attempt > 0 {
                let ceiling = min(configuration.maxDelay, configuration.baseDelay * Double(1 << min(attempt, 20)))
                try? await Task.sleep(nanoseconds: UInt64(Double.random(in: 0...ceiling) * 1e9))
            }
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
                lastError = BucketError(.transient, "Cannot reach \(location): \(error) (after \(attempt + 1) attempts).")
            }
        }
        throw lastError
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
            do {
                for try await chunk in response.body {
                    if collected.count + chunk.readableBytes > limit {
                        if (200..<300).contains(status) { throw BucketError(.tooLarge, "The object holds more than \(limit) bytes.") }
                        break
                    }
                    collected += chunk.readableBytesView
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
        let code = ErrorXML(response.body).code
        if response.status >= 500 || code == "SlowDown" || code == "RequestTimeout" || code == "ConditionalRequestConflict" || response.status == 409
            && code == "OperationAborted"
        {
            return "\(response.status)\(code.map { " \($0)" } ?? "")"
        }
        return nil
    }

    func failure(_ response: Response, action: String) -> BucketError {
        let error = ErrorXML(response.body)
        let detail = [error.code, error.message].compactMap { $0 }.joined(separator: ": ")
        let said = "\(location) refused to \(action): \(response.status)\(detail.isEmpty ? "" : " \(detail)")"
        switch error.code {
        case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed":
            return BucketError(.badCredentials, "\(said). Check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.")
        case "NoSuchBucket":
            return BucketError(.noSuchBucket, "\(said). The bucket \(configuration.bucket) does not exist; create it, or check the URL and AWS_ENDPOINT_URL.")
        case "AccessDenied", "AllAccessDisabled":
            return BucketError(.accessDenied, "\(said). These credentials may not do that in \(configuration.bucket).")
        case "RequestTimeTooSkewed":
            return BucketError(.clockSkew, "\(said). This computer's clock is too far from the bucket's; set it right (NTP).")
        default:
            if response.status == 301 || error.code == "PermanentRedirect" || error.code == "AuthorizationHeaderMalformed" {
                return BucketError(.invalidURL, "\(said). The bucket is in another region; set AWS_REGION.")
            }
            if response.status == 403 { return BucketError(.accessDenied, "\(said).") }
            if response.status == 404 { return BucketError(.noSuchBucket, "\(said).") }
            return BucketError(.badResponse, "\(said).")
        }
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
        code = scan.first("Code")
        message = scan.first("Message")
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
