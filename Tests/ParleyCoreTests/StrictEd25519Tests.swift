import Crypto
import ParleyCore
import ParleyTesting
import Testing

struct SignatureVector: CustomTestStringConvertible, Sendable {
    let name: String
    let publicKey: [UInt8]
    let message: [UInt8]
    let signature: [UInt8]
    /// `valid`, or the strict rule expected to fail.
    let verdict: String
    var testDescription: String { name }

    static func strict() throws -> [SignatureVector] {
        try Vectors.load("ed25519_strict.json")["cases"]!.array.map { item in
            SignatureVector(
                name: item["name"]!.text, publicKey: Vectors.hex(item["public_key"]!.text), message: Vectors.hex(item["message"]!.text),
                signature: Vectors.hex(item["signature"]!.text), verdict: item["verdict"]!.text)
        }
    }

    static func wycheproof() throws -> [SignatureVector] {
        try Vectors.load("ed25519_wycheproof.json")["testGroups"]!.array.flatMap { group in
            let key = Vectors.hex(group["publicKey"]!["pk"]!.text)
            return group["tests"]!.array.map { test in
                SignatureVector(
                    name: "tcId \(test["tcId"]!.integerValue!) \(test["comment"]!.text)", publicKey: key,
                    message: Vectors.hex(test["msg"]!.text), signature: Vectors.hex(test["sig"]!.text), verdict: test["result"]!.text)
            }
        }
    }
}

func strictVerdict(_ vector: SignatureVector) -> String {
    do {
        try StrictEd25519.verify(signature: vector.signature, message: vector.message, publicKey: vector.publicKey)
        return "valid"
    } catch {
        return switch error {
        case .keyLength: "key_length"
        case .keyNotCanonical: "key_not_canonical"
        case .keySmallOrder: "key_small_order"
        case .keyNotOnCurve: "key_not_on_curve"
        case .signatureLength: "signature_length"
        case .rNotCanonical: "r_not_canonical"
        case .rSmallOrder: "r_small_order"
        case .sNotReduced: "s_not_reduced"
        case .mismatch: "mismatch"
        }
    }
}

@Suite struct StrictEd25519Tests {
    @Test func `RFC 8032 vectors sign and verify`() throws {
        for item in try Vectors.load("ed25519_rfc8032.json")["cases"]!.array {
            let key = try DeviceSigningKey(seed: Vectors.hex(item["secret_key"]!.text))
            #expect(key.publicKeyBytes == Vectors.hex(item["public_key"]!.text))
            let message = Vectors.hex(item["message"]!.text)
            let signature = Vectors.hex(item["signature"]!.text)
            #expect(key.sign(message) == signature, "Ed25519 signing is deterministic")
            #expect(throws: Never.self) { try StrictEd25519.verify(signature: signature, message: message, publicKey: key.publicKeyBytes) }
        }
    }

    @Test(arguments: try SignatureVector.strict())
    func `strict vectors get the expected verdict`(vector: SignatureVector) {
        #expect(strictVerdict(vector) == vector.verdict)
    }

    @Test(arguments: try SignatureVector.wycheproof())
    func `Wycheproof cases are accepted or refused as Wycheproof says`(vector: SignatureVector) {
        let accepted = strictVerdict(vector) == "valid"
        #expect(accepted == (vector.verdict == "valid"))
    }

    @Test func `swift-crypto alone accepts a small-order key that the strict check refuses`() throws {
        // The reason StrictEd25519 exists: with A and R of small order and S = 0, the equation holds for any message.
        let cases = try SignatureVector.strict().filter { $0.verdict == "key_small_order" }
        #expect(cases.count == 8)
        let acceptedByLibrary = cases.filter { vector in
            (try? Curve25519.Signing.PublicKey(rawRepresentation: vector.publicKey))?.isValidSignature(vector.signature, for: vector.message) == true
        }
        #expect(!acceptedByLibrary.isEmpty, "if the library now refuses all of these, the strict layer is belt and braces")
        for vector in acceptedByLibrary { #expect(strictVerdict(vector) == "key_small_order") }
    }

    @Test func `the small-order lists match the ones derived from the curve equations`() throws {
        let vectors = try Vectors.load("ed25519_strict.json")
        #expect(StrictEd25519.smallOrderPoints.map { Hex.encode($0) }.sorted() == vectors["small_order_points"]!.array.map(\.text).sorted())
        #expect(X25519KeyCheck.lowOrderPoints.map { Hex.encode($0) }.sorted() == vectors["x25519_low_order_points"]!.array.map(\.text).sorted())
    }

    @Test func `weak X25519 keys are refused`() {
        #expect(throws: X25519KeyCheck.Fault.lowOrder) { try X25519KeyCheck.check([UInt8](repeating: 0, count: 32)) }
        #expect(throws: X25519KeyCheck.Fault.notCanonical) { try X25519KeyCheck.check([UInt8](repeating: 0xFF, count: 32)) }
        #expect(throws: X25519KeyCheck.Fault.length(31)) { try X25519KeyCheck.check([UInt8](repeating: 9, count: 31)) }
        let good = Array(Curve25519.KeyAgreement.PrivateKey().publicKey.rawRepresentation)
        #expect(throws: Never.self) { try X25519KeyCheck.check(good) }
    }
}

@Suite struct PublicKeyCheckTests {
    @Test func `keys bound in member events must be canonical, of large order and on the curve`() throws {
        for item in try Vectors.load("ed25519_strict.json")["public_key_checks"]!.array {
            let key = Vectors.hex(item["public_key"]!.text)
            let verdict: String
            do {
                try StrictEd25519.checkPublicKey(key)
                verdict = "valid"
            } catch {
                verdict =
                    switch error {
                    case .keyNotOnCurve: "key_not_on_curve"
                    case .keySmallOrder: "key_small_order"
                    case .keyNotCanonical: "key_not_canonical"
                    default: "other"
                    }
            }
            #expect(verdict == item["verdict"]!.text, "key \(item["public_key"]!.text)")
        }
    }

    @Test func `freshly generated keys pass the public key check`() {
        for _ in 0..<50 {
            #expect(throws: Never.self) { try StrictEd25519.checkPublicKey(Array(Curve25519.Signing.PrivateKey().publicKey.rawRepresentation)) }
        }
    }
}
