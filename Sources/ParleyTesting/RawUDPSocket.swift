import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain UDP socket on 127.0.0.1, for sending a node what no honest peer would.
public final class RawUDPSocket: @unchecked Sendable {
    let descriptor: Int32
    public let port: Int

    public init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.descriptor = descriptor
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else {
            close(descriptor)
            throw FreePortError()
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    public func send(_ bytes: [UInt8], to port: Int) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { target in
                bytes.withUnsafeBytes { sendto(descriptor, $0.baseAddress, bytes.count, 0, target, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }

    /// ``receiveAll(quietSeconds:timeoutSeconds:)`` on a thread of its own, for async tests: waiting in `recv` on the
    /// cooperative pool would starve the tasks that are to answer.
    public func received(quietSeconds: Double = 1, timeoutSeconds: Double = 10) async -> [[UInt8]] {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: self.receiveAll(quietSeconds: quietSeconds, timeoutSeconds: timeoutSeconds)) }
        }
    }

    /// The datagrams that come until none has for `quietSeconds` after the first, or `timeoutSeconds` have passed.
    public func receiveAll(quietSeconds: Double = 1, timeoutSeconds: Double = 10) -> [[UInt8]] {
        var received: [[UInt8]] = []
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var lastArrival: Date?
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            if let lastArrival, Date().timeIntervalSince(lastArrival) >= quietSeconds { break }
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, 65_536, 0) }
            if count > 0 {
                received.append(Array(buffer[0..<count]))
                lastArrival = Date()
            }
        }
        return received
    }
}
