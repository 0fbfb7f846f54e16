import Foundation
import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

struct SigV4Case: CustomStringConvertible, Sendable {
    let name: String
    let method: String
    let path: String
    let query: [(String, String)]
    let headers: [(String, String)]
    let body: String
    let canonicalRequest: String
    let stringToSign: String
    let authorization: String
    var description: String { name }

    static func all() throws -> [SigV4Case] {
        try Vectors.load("sigv4.json")["cases"]!.array.map { item in
            let query = item["query"]!.text.split(separator: "&").map { pair in
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                return (String(parts[0]).removingPercentEncoding!, parts.count > 1 ? String(parts[1]).removingPercentEncoding! : "")
            }
            return SigV4Case(
                name: item["name"]!.text, method: item["method"]!.text, path: item["path"]!.text, query: query,
                headers: item["headers"]!.array.map { ($0.array[0].text, $0.array[1].text) }, body: item["body"]!.text,
                canonicalRequest: item["canonical_request"]!.text, stringToSign: item["string_to_sign"]!.text,
                authorization: item["authorization"]!.text)
        }
    }
}

@Suite struct SigV4Tests {
    static let vectors = try! Vectors.load("sigv4.json")

    @Test("The signer reproduces every case of the AWS SigV4 test suite", arguments: try SigV4Case.all())
    func signerMatchesTheSuite(_ vector: SigV4Case) {
        let file = SigV4Tests.vectors
        var credentials = AWSCredentials(accessKeyID: file["access_key_id"]!.text, secretAccessKey: file["secret_access_key"]!.text)
        if vector.headers.contains(where: { $0.0.lowercased() == "x-amz-security-token" }) { credentials.sessionToken = file["session_token"]!.text }
        let signer = SigV4Signer(credentials: credentials, region: file["region"]!.text, service: file["service"]!.text)
        let signature = signer.sign(
            method: vector.method, path: vector.path, query: vector.query, headers: vector.headers,
            payloadHash: SigV4Signer.sha256Hex(Array(vector.body.utf8)), amzDate: file["amz_date"]!.text)
        #expect(signature.canonicalRequest == vector.canonicalRequest)
        #expect(signature.stringToSign == vector.stringToSign)
        #expect(signature.authorization == vector.authorization)
    }

    @Test("x-amz-date is the UTC calendar time of the clock")
    func amzDateIsUTC() {
        #expect(SigV4Signer.amzDate(unixSeconds: 1_440_938_160) == "20150830T123600Z")
        #expect(SigV4Signer.amzDate(unixSeconds: 951_782_400) == "20000229T000000Z")
    }
}
