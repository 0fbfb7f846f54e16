import Crypto
import Foundation
import ParleyCore
import ParleyTesting
import Testing

struct CanonicalJSONVector: CustomTestStringConvertible, Sendable {
    let name: String
    let input: [UInt8]
    let canonical: String?
    let error: String?
    var testDescription: String { name }

    static func all() throws -> [CanonicalJSONVector] {
        try Vectors.load("canonical_json.json")["cases"]!.array.map { item in
            let input = item["input_hex"].map { Vectors.hex($0.text) } ?? Array(item["input"]!.text.utf8)
            return CanonicalJSONVector(name: item["name"]!.text, input: input, canonical: item["canonical"]?.stringValue, error: item["error"]?.stringValue)
        }
    }
}

@Suite struct CanonicalJSONTests {
    @Test(arguments: try CanonicalJSONVector.all())
    func `each vector gives its canonical form or its error`(vector: CanonicalJSONVector) throws {
        if let expected = vector.canonical {
            let output = try CanonicalJSON.canonicalize(vector.input)
            #expect(String(decoding: output, as: UTF8.self) == expected)
            #expect(try CanonicalJSON.canonicalize(output) == output, "canonical output must be a fixed point")
        } else {
            #expect {
                _ = try JSONParser().parse(vector.input)
            } throws: { error in
                (error as? JSONError)?.code.rawValue == vector.error
            }
        }
    }

    @Test func `nesting 100,000 levels deep is rejected without exhausting the stack`() {
        let deep = [UInt8](repeating: UInt8(ascii: "["), count: 100_000) + [UInt8](repeating: UInt8(ascii: "]"), count: 100_000)
        #expect(throws: JSONError.self) { try JSONParser().parse(deep) }
        do {
            _ = try JSONParser().parse(deep)
        } catch {
            #expect(error.code == .tooDeep)
            #expect(error.offset <= 40)
        }
    }

    @Test func `input over the size limit is rejected before it is parsed`() {
        let large = [UInt8](repeating: UInt8(ascii: " "), count: (1 << 20) + 1)
        #expect {
            try JSONParser().parse(large)
        } throws: { ($0 as? JSONError)?.code == .tooLarge }
    }

    @Test func `the error message names the problem and its position`() {
        do {
            _ = try JSONParser().parse(#"{"a":1,"a":2}"#)
            Issue.record("duplicate keys were accepted")
        } catch {
            #expect(error.description.contains("duplicate object key \"a\""))
            #expect(error.offset == 7)
        }
    }

    @Test func `objects look keys up by bytes, not by Unicode equivalence`() throws {
        let value = try JSONParser().parse(#"{"\u00e9":1,"e\u0301":2}"#)
        let object = try #require(value.objectValue)
        #expect(object.count == 2)
        #expect(object["\u{E9}"] == .integer(1))
        #expect(object["e\u{301}"] == .integer(2))
    }

    @Test func `building an object in any key order gives the same canonical bytes`() {
        var forward = JSONObject()
        var backward = JSONObject()
        let keys = ["b", "a", "c", "aa", "é", "Z"]
        for (index, key) in keys.enumerated() { forward[key] = .integer(Int64(index)) }
        for (index, key) in keys.enumerated().reversed() { backward[key] = .integer(Int64(index)) }
        #expect(CanonicalJSON.encode(.object(forward)) == CanonicalJSON.encode(.object(backward)))
        #expect(CanonicalJSON.string(.object(forward)) == #"{"Z":5,"a":1,"aa":3,"b":0,"c":2,"é":4}"#)
    }

    @Test func `random values survive an encode and parse round trip`() throws {
        var generator = SeededGenerator(seed: 7)
        for _ in 0..<300 {
            let value = randomValue(depth: 0, using: &generator)
            let bytes = CanonicalJSON.encode(value)
            #expect(try JSONParser().parse(bytes) == value)
            #expect(try CanonicalJSON.canonicalize(bytes) == bytes)
        }
    }

    func randomValue(depth: Int, using generator: inout SeededGenerator) -> JSONValue {
        let pick = depth > 3 ? Int.random(in: 0..<4, using: &generator) : Int.random(in: 0..<6, using: &generator)
        switch pick {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2: return .integer(Int64.random(in: -JSONValue.maxSafeInteger...JSONValue.maxSafeInteger, using: &generator))
        case 3:
            let scalars = (0..<Int.random(in: 0..<12, using: &generator)).map { _ in
                [0x41, 0x0A, 0x22, 0x5C, 0x01, 0xE9, 0x4E2D, 0x1F600, 0x2028, 0x7F].randomElement(using: &generator)!
            }
            return .string(String(String.UnicodeScalarView(scalars.map { Unicode.Scalar(UInt32($0))! })))
        case 4: return .array((0..<Int.random(in: 0..<4, using: &generator)).map { _ in randomValue(depth: depth + 1, using: &generator) })
        default:
            var object = JSONObject()
            for _ in 0..<Int.random(in: 0..<4, using: &generator) {
                object[["a", "b", "é", "key", "\u{1}"].randomElement(using: &generator)!] = randomValue(depth: depth + 1, using: &generator)
            }
            return .object(object)
        }
    }
}

@Suite struct Base64Tests {
    @Test func `decoding accepts only the canonical padded form`() {
        #expect(Base64.decode("AAE=") == [0, 1])
        #expect(Base64.decode("AAF=") == nil, "unused bits set")
        #expect(Base64.decode("AAE") == nil, "missing padding")
        #expect(Base64.decode("AA==AA==") == nil, "padding in the middle")
        #expect(Base64.decode("-_8=") == nil, "URL-safe alphabet")
        #expect(Base64.decode("AA E=") == nil, "whitespace")
        #expect(Base64.decode("") == [])
        #expect(Base64.decode("A===") == nil, "three padding characters")
        #expect(Base64.decode("====") == nil, "only padding")
        #expect(Base64.decode("AA=AAAAA") == nil, "padding inside a quantum")
        #expect(Base64.decode("AAAA\u{80}AAA") == nil, "non-ASCII")
    }

    @Test func `encoding and decoding round-trip every length`() {
        var generator = SeededGenerator(seed: 1)
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }

    @Test func `encoding matches Foundation's encoder for every length, contiguous or not`() {
        var generator = SeededGenerator(seed: 2)
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let expected = Data(bytes).base64EncodedString()
            #expect(Base64.encode(bytes) == expected)
            #expect(Base64.encode(bytes.lazy.map { $0 }) == expected, "a collection without contiguous storage")
        }
    }

    @Test func `decoding agrees with Foundation's decoder for every byte at every position`() {
        let alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        // Three full quanta and a padded one: the full ones take the four-at-a-time path.
        let original = Array(Base64.encode(Array(0..<10 as Range<UInt8>)).utf8)
        for position in 0..<original.count - 2 {
            for byte in UInt8.min...UInt8.max {
                var text = original
                text[position] = byte
                let candidate = String(decoding: text, as: UTF8.self)
                let decoded = Base64.decode(candidate)
                if !alphabet.contains(byte) {
                    #expect(decoded == nil, "byte \(byte) at \(position)")
                } else if position < original.count - 4 {
                    #expect(decoded.map { Data($0) } == Data(base64Encoded: candidate), "byte \(byte) at \(position)")
                }
            }
        }
    }

    @Test func `hex checks agree with decoding for every byte at every position`() {
        // 33 bytes: long enough for the vectorized part of each loop, odd enough for a tail.
        let bytes = (0..<33).map { UInt8($0 * 7 + 3) }
        let original = Array(Hex.encode(bytes).utf8)
        #expect(Hex.decode(String(decoding: original, as: UTF8.self)) == bytes)
        for position in original.indices {
            for byte in UInt8.min...UInt8.max {
                var text = original
                text[position] = byte
                let candidate = String(decoding: text, as: UTF8.self)
                let decodes = Hex.decode(candidate) != nil && candidate.utf8.count == 66
                #expect(Hex.isLowercaseHex(candidate, byteCount: 33) == decodes, "byte \(byte) at \(position)")
                #expect(Hex.matches(candidate, bytes) == (text == original), "byte \(byte) at \(position)")
            }
        }
        #expect(!Hex.matches(String(decoding: original.dropLast(2), as: UTF8.self), bytes))
        let digest = SHA256.hash(data: Array("parley".utf8))
        #expect(Hex.encode(digest) == Hex.encode(Array(digest)))
        #expect(Hex.matches(Hex.encode(Array(digest)), digest))
    }

    @Test func `hex decoding refuses uppercase and odd lengths`() {
        #expect(Hex.decode("00ff") == [0, 255])
        #expect(Hex.decode("00FF") == nil)
        #expect(Hex.decode("0") == nil)
    }
}

@Suite struct Base64CanonicalTests {
    @Test func `the allocation-free check agrees with decoding for every length and corruption`() {
        var generator = SeededGenerator(seed: 3)
        for length in [1, 2, 3, 31, 32, 33, 64] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var text = Array(Base64.encode(bytes).utf8)
            #expect(Base64.isCanonical(String(decoding: text, as: UTF8.self), byteCount: length))
            #expect(!Base64.isCanonical(String(decoding: text, as: UTF8.self), byteCount: length + 1))
            for index in text.indices {
                let original = text[index]
                for replacement in Array("Aa+/=-_ \u{0}".utf8) where replacement != original {
                    text[index] = replacement
                    let candidate = String(decoding: text, as: UTF8.self)
                    #expect(Base64.isCanonical(candidate, byteCount: length) == (Base64.decode(candidate)?.count == length), "\(candidate)")
                }
                text[index] = original
            }
        }
    }
}
