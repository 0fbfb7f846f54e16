import Foundation

/// A bucket's address: `file:///absolute/path` or `s3://BUCKET[/PREFIX]`.
///
/// An S3 URL carries no secrets: credentials, region and endpoint come from the standard AWS environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`), which `?region=`, `?endpoint=` and `?addressing=path|virtual` may override.
public enum BucketURL: Sendable, Equatable {
    case folder(path: String)
    case s3(bucket: String, prefix: String, options: [String: String])

    /// Parses and checks a bucket URL.
    /// - Throws: ``BucketError`` `.invalidURL` naming what is wrong.
    public init(_ text: String) throws(BucketError) {
        if text.hasPrefix("file://") {
            let path = String(text.dropFirst(7))
            guard path.hasPrefix("/") else { throw BucketError(.invalidURL, "A folder bucket is file:///absolute/path; \(text) is not absolute.") }
            guard !path.contains("\0"), !path.split(separator: "/").contains(where: { $0 == ".." }) else {
                throw BucketError(.invalidURL, "The folder path in \(text) has a .. component or NUL.")
            }
            self = .folder(path: path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path)
        } else if text.hasPrefix("s3://") {
            var rest = Substring(text.dropFirst(5))
            var options: [String: String] = [:]
            if let question = rest.firstIndex(of: "?") {
                for pair in rest[rest.index(after: question)...].split(separator: "&") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2, ["region", "endpoint", "addressing"].contains(String(parts[0])),
                        let value = String(parts[1]).removingPercentEncoding
                    else { throw BucketError(.invalidURL, "Unknown option \(pair) in \(text); known: region, endpoint, addressing.") }
                    options[String(parts[0])] = value
                }
                rest = rest[..<question]
            }
            let bucket = rest.prefix { $0 != "/" }
            var prefix = String(rest.dropFirst(bucket.count).drop { $0 == "/" })
            guard S3Bucket.isValidName(String(bucket)) else {
                throw BucketError(.invalidURL, "\(bucket) is not an S3 bucket name (3–63 of a-z 0-9 . -, starting and ending with a letter or digit).")
            }
            if !prefix.isEmpty {
                if !prefix.hasSuffix("/") { prefix += "/" }
                if let problem = ObjectKey.problem(with: String(prefix.dropLast())) { throw BucketError(.invalidURL, "The prefix in \(text): \(problem).") }
            }
            if let addressing = options["addressing"], addressing != "path", addressing != "virtual" {
                throw BucketError(.invalidURL, "addressing is path or virtual, not \(addressing).")
            }
            self = .s3(bucket: String(bucket), prefix: prefix, options: options)
        } else {
            throw BucketError(.invalidURL, "\(text) is not a bucket URL: use file:///absolute/path or s3://BUCKET/PREFIX.")
        }
    }

    /// The URL in its normal form.
    public var text: String {
        switch self {
        case .folder(let path): return "file://\(path)"
        case .s3(let bucket, let prefix, let options):
            let query = options.keys.sorted().map { "\($0)=\(options[$0]!.addingPercentEncoding(withAllowedCharacters: BucketURL.queryValue) ?? "")" }
            return "s3://\(bucket)/\(prefix)\(query.isEmpty ? "" : "?" + query.joined(separator: "&"))"
        }
    }

    static let queryValue = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:/"))

    /// Opens the store this URL names.
    /// - Throws: ``BucketError`` when an S3 URL has no credentials in the environment.
    public func open(environment: [String: String] = ProcessInfo.processInfo.environment) throws(BucketError) -> any ObjectStore {
        switch self {
        case .folder(let path):
            return FolderStore(root: path)
        case .s3(let bucket, let prefix, let options):
            guard let keyID = environment["AWS_ACCESS_KEY_ID"], !keyID.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw BucketError(
                    .badCredentials, "No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones).")
            }
            let region = options["region"] ?? environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
            let endpoint = options["endpoint"] ?? environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"]
            let configuration = S3Configuration(
                bucket: bucket, prefix: prefix, region: region, endpoint: endpoint, pathStyle: options["addressing"].map { $0 == "path" },
                credentials: AWSCredentials(
                    accessKeyID: keyID, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }))
            return try S3Store(configuration: configuration)
        }
    }
}

enum S3Bucket {
    static func isValidName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { return false }
        let alphanumeric: (UInt8) -> Bool = { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) }
        return alphanumeric(bytes.first!) && alphanumeric(bytes.last!) && bytes.allSatisfy { alphanumeric($0) || $0 == 0x2E || $0 == 0x2D }
            && !name.contains("..")
    }
}
