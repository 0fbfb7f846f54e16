#if canImport(Glibc)
    import Glibc
#endif

/// Ports for test servers to listen on.
public enum FreePort {
    public enum Kind: Sendable {
        case tcp, udp
    }

    /// A port free on 127.0.0.1 now, below the system's ephemeral range (32768 and up), so that no socket given a port
    /// by the system takes it while a test's server restarts or before it binds.
    public static func belowEphemeral(_ kind: Kind = .tcp) throws -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<32_000)
            let descriptor = socket(AF_INET, Int32(kind == .tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
            defer { close(descriptor) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(candidate).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return candidate }
        }
        throw FreePortError()
    }
}

public struct FreePortError: Error, CustomStringConvertible {
    public var description: String { "No free port between 20000 and 32000 on 127.0.0.1." }
}
