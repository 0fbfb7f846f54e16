import Crypto
import ParleyCore

/// AWS credentials.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// AWS Signature Version 4 (header form), written to the published algorithm and checked against the AWS test
/// suite (docs/vectors/sigv4.json).
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The pieces of one signature, kept for tests and diagnostics.
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var authorization: String
    }

    /// Signs a request.
    /// - Parameters:
    ///   - path: the decoded path (`/bucket/key`); each byte outside the unreserved set is percent-encoded once,
    ///     as S3 expects.
    ///   - query: decoded name/value pairs.
    ///   - headers: every header to sign, including `host` and `x-amz-date` (and `x-amz-security-token` with
    ///     temporary credentials).
    ///   - payloadHash: lowercase hex SHA-256 of the body.
    ///   - amzDate: `YYYYMMDD'T'HHMMSS'Z'`.
    public func sign(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String, amzDate: String
    ) -> Signature {
        let canonicalQuery =
            query
            .map { (SigV4Signer.encode($0.0, keepSlash: false), SigV4Signer.encode($0.1, keepSlash: false)) }
            .sorted {
                $0.0 == $1.0 ? Array($0.1.utf8).lexicographicallyPrecedes(Array($1.1.utf8)) : Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8))
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
        // Same-named headers join in order with commas; values are trimmed and inner runs of spaces collapsed.
        var merged: [String: [String]] = [:]
        for (name, value) in headers { merged[name.lowercased(), default: []].append(SigV4Signer.trimmed(value)) }
        let names = merged.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [
            method, SigV4Signer.encode(path.isEmpty ? "/" : path, keepSlash: true), canonicalQuery, canonicalHeaders, signedHeaders, payloadHash,
        ].joined(separator: "\n")

        let date = String(amzDate.prefix(8))
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, SigV4Signer.sha256Hex(Array(canonicalRequest.utf8))].joined(separator: "\n")
        var key = SymmetricKey(data: Array("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [date, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let signature = Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign, authorization: authorization)
    }

    public static func sha256Hex(_ bytes: [UInt8]) -> String { Hex.encode(Array(SHA256.hash(data: bytes))) }

    /// RFC 3986 percent-encoding of every byte but the unreserved ones (and `/` in paths).
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                result += "/"
            default:
                let digits = Array("0123456789ABCDEF".utf8)
                result += "%"
                result.unicodeScalars.append(Unicode.Scalar(digits[Int(byte >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(digits[Int(byte & 0x0F)]))
            }
        }
        return result
    }

    static func trimmed(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }

    /// The `x-amz-date` form of a Unix time in seconds: `YYYYMMDD'T'HHMMSS'Z'`.
    public static func amzDate(unixSeconds: Int64) -> String {
        "\(EventID.formatTimestamp(unixSeconds * 1000).prefix(15))Z"
    }
}
