import CArgon2
import ParleyCore

/// Argon2id (RFC 9106) cost parameters, as a key backup or a passphrase-protected invite records them.
public struct Argon2idParameters: Sendable, Equatable {
    public var memoryKiB: UInt32
    public var iterations: UInt32
    public var parallelism: UInt32

    public init(memoryKiB: UInt32, iterations: UInt32, parallelism: UInt32) {
        self.memoryKiB = memoryKiB
        self.iterations = iterations
        self.parallelism = parallelism
    }

    /// What this node writes: above OWASP's recommended minimum (19 MiB, 2 passes, 1 lane) in memory and passes;
    /// about a quarter of a second here.
    public static let standard = Argon2idParameters(memoryKiB: 64 * 1024, iterations: 3, parallelism: 1)

    /// Why a file's parameters are refused: too weak to protect a passphrase, or so costly that a hostile file could
    /// exhaust the machine. `nil` when acceptable.
    public var problem: String? {
        if memoryKiB < 19 * 1024 || iterations < 2 || parallelism < 1 {
            return "Argon2id parameters below the minimum (19 MiB, 2 passes, 1 lane)"
        }
        if memoryKiB > 1024 * 1024 || iterations > 64 || parallelism > 16 {
            return "Argon2id parameters above what this node computes (1 GiB, 64 passes, 16 lanes)"
        }
        return nil
    }

    public var jsonObject: JSONObject {
        JSONObject([
            "algorithm": "argon2id", "memory_kib": .integer(Int64(memoryKiB)), "iterations": .integer(Int64(iterations)),
            "parallelism": .integer(Int64(parallelism)),
        ])
    }

    public init?(json: JSONObject) {
        guard json["algorithm"] == .string("argon2id"), case .integer(let memory)? = json["memory_kib"],
            case .integer(let iterations)? = json["iterations"], case .integer(let parallelism)? = json["parallelism"],
            let memory = UInt32(exactly: memory), let iterations = UInt32(exactly: iterations), let parallelism = UInt32(exactly: parallelism)
        else { return nil }
        self.init(memoryKiB: memory, iterations: iterations, parallelism: parallelism)
    }

    /// Argon2id (version 0x13) of `passphrase` with `salt`: `byteCount` bytes of key.
    public func deriveKey(passphrase: [UInt8], salt: [UInt8], byteCount: Int = 32) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: byteCount)
        let status = passphrase.withUnsafeBytes { secret in
            salt.withUnsafeBytes { saltBytes in
                output.withUnsafeMutableBytes { out in
                    argon2id_hash_raw(
                        iterations, memoryKiB, parallelism, secret.baseAddress, secret.count, saltBytes.baseAddress, saltBytes.count,
                        out.baseAddress, out.count)
                }
            }
        }
        guard status == ARGON2_OK.rawValue else {
            throw Argon2Error(status: status)
        }
        return output
    }

    /// An encoded hash of `password` (`$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`, PHC string format) with a fresh 16-byte
    /// `salt`: what a server stores instead of a password.
    public func encodedHash(password: [UInt8], salt: [UInt8], hashBytes: Int = 32) throws -> String {
        let length = argon2_encodedlen(iterations, memoryKiB, parallelism, UInt32(salt.count), UInt32(hashBytes), Argon2_id)
        var encoded = [CChar](repeating: 0, count: length)
        let status = password.withUnsafeBytes { secret in
            salt.withUnsafeBytes { saltBytes in
                argon2id_hash_encoded(
                    iterations, memoryKiB, parallelism, secret.baseAddress, secret.count, saltBytes.baseAddress, saltBytes.count, hashBytes,
                    &encoded, length)
            }
        }
        guard status == ARGON2_OK.rawValue else { throw Argon2Error(status: status) }
        return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `password` matches an ``encodedHash(password:salt:hashBytes:)``, compared in constant time (libargon2's
    /// own comparison), at the cost the hash records.
    public static func verify(password: [UInt8], encodedHash: String) -> Bool {
        password.withUnsafeBytes { secret in argon2id_verify(encodedHash, secret.baseAddress, secret.count) == ARGON2_OK.rawValue }
    }
}

/// libargon2 failed: out of memory, or parameters it refuses.
public struct Argon2Error: Error, Sendable, CustomStringConvertible {
    public var status: Int32
    public var description: String { "Argon2id failed: \(String(cString: argon2_error_message(status)))." }
}
