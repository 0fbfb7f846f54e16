import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What a faulty network does to each datagram (a userspace stand-in for netem): drop it, send it twice, hold it back
/// so it arrives after later ones, or drop everything between devices cut apart. Decisions only, from the random
/// numbers given: ``FaultProxy`` carries them out.
public struct FaultPlan: Sendable, Equatable {
    /// Fractions, 0 … 1.
    public var loss = 0.0
    public var duplication = 0.0
    public var reordering = 0.0
    /// How long a reordered datagram is held back (ms).
    public var reorderDelayMs: ClosedRange<Int> = 5...40

    public init(loss: Double = 0, duplication: Double = 0, reordering: Double = 0) {
        self.loss = loss
        self.duplication = duplication
        self.reordering = reordering
    }

    /// The delays (ms) after which copies of one datagram go out: none when it is lost, two when duplicated.
    public func deliveries(using random: inout some RandomNumberGenerator) -> [Int] {
        if Double.random(in: 0..<1, using: &random) < loss { return [] }
        var delays = [Double.random(in: 0..<1, using: &random) < reordering ? Int.random(in: reorderDelayMs, using: &random) : 0]
        if Double.random(in: 0..<1, using: &random) < duplication {
            delays.append(Double.random(in: 0..<1, using: &random) < reordering ? Int.random(in: reorderDelayMs, using: &random) : 0)
        }
        return delays
    }
}

/// A UDP proxy on 127.0.0.1 between devices: each device reaches each other at an address of the proxy's
/// (``port(of:seenBy:)``), and what passes goes through a ``FaultPlan``; devices can be cut apart (a partition) or taken
/// offline. Device `j` sends to the socket standing for `i` in its view; the proxy passes the datagram on to `i` from
/// the socket standing for `j` in `i`'s view, so each device sees each other at one address, the one it sends to.
///
/// Runs on a thread of its own, polling its sockets: it is a test and simulation tool, not part of a node.
public final class FaultProxy: @unchecked Sendable {
    private let devicePorts: [Int]
    /// `sockets[viewer][device]`: the socket `viewer` sends to to reach `device`, and its port.
    private let sockets: [[(descriptor: Int32, port: Int)?]]
    private let state: Mutex<State>
    private let stopping = Atomic<Bool>(false)

    private struct State {
        var plan: FaultPlan
        var random = SystemRandomNumberGenerator()
        /// Devices that may not reach each other now, as pairs (lower index first).
        var cut: Set<[Int]> = []
        var offline: Set<Int> = []
        var forwarded = 0
        var dropped = 0
    }

    /// A proxy between devices listening on `devicePorts` (127.0.0.1).
    public init(devicePorts: [Int], plan: FaultPlan) throws {
        self.devicePorts = devicePorts
        state = Mutex(State(plan: plan))
        var sockets: [[(descriptor: Int32, port: Int)?]] = []
        for viewer in devicePorts.indices {
            var row: [(descriptor: Int32, port: Int)?] = []
            for device in devicePorts.indices { row.append(viewer == device ? nil : try Self.bindLoopback()) }
            sockets.append(row)
        }
        self.sockets = sockets
        let loop = Loop(sockets: sockets, devicePorts: devicePorts)
        // The thread holds the proxy until ``stop()``: a proxy that is not stopped runs on.
        let thread = Thread { [self] in loop.run(proxy: self) }
        thread.name = "parley-fault-proxy"
        thread.start()
    }

    /// The port `viewer` reaches `device` at.
    public func port(of device: Int, seenBy viewer: Int) -> Int { sockets[viewer][device]!.port }

    /// Stops forwarding and closes the sockets (once the loop notices, within 50 ms).
    public func stop() { stopping.store(true, ordering: .relaxed) }

    var isStopping: Bool { stopping.load(ordering: .relaxed) }

    public func setPlan(_ plan: FaultPlan) { state.withLock { $0.plan = plan } }

    /// Cuts `group` off from every other device (both ways), or heals every cut with an empty group.
    public func partition(_ group: Set<Int>) {
        state.withLock { state in
            state.cut = []
            for inside in group {
                for outside in 0..<devicePorts.count where !group.contains(outside) { state.cut.insert([min(inside, outside), max(inside, outside)]) }
            }
        }
    }

    /// Takes a device off the network, or puts it back.
    public func setOffline(_ device: Int, _ isOffline: Bool) {
        state.withLock { state in
            if isOffline { state.offline.insert(device) } else { state.offline.remove(device) }
        }
    }

    /// Datagrams forwarded (copies counted) and dropped so far.
    public var counts: (forwarded: Int, dropped: Int) { state.withLock { ($0.forwarded, $0.dropped) } }

    /// The delays of the copies of a datagram from device `from` to device `to`; none when it is dropped.
    func deliveries(from: Int, to: Int) -> [Int] {
        state.withLock { state in
            if state.offline.contains(from) || state.offline.contains(to) || state.cut.contains([min(from, to), max(from, to)]) {
                state.dropped += 1
                return []
            }
            let delays = state.plan.deliveries(using: &state.random)
            if delays.isEmpty { state.dropped += 1 } else { state.forwarded += delays.count }
            return delays
        }
    }

    static func bindLoopback() throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard descriptor >= 0, bound else {
            if descriptor >= 0 { close(descriptor) }
            throw FaultProxyError(description: "The fault proxy cannot bind a UDP socket on 127.0.0.1: \(String(cString: strerror(errno))).")
        }
        var size: Int32 = 1 << 20
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// The proxy's sockets and what is waiting to go out, owned by its thread.
    private final class Loop: @unchecked Sendable {
        let devicePorts: [Int]
        /// Each socket's viewer and the device it stands for.
        let owners: [Int32: (viewer: Int, device: Int)]
        let sockets: [[(descriptor: Int32, port: Int)?]]
        var pending: [(dueMs: Int64, descriptor: Int32, port: Int, bytes: [UInt8])] = []

        init(sockets: [[(descriptor: Int32, port: Int)?]], devicePorts: [Int]) {
            self.sockets = sockets
            self.devicePorts = devicePorts
            var owners: [Int32: (viewer: Int, device: Int)] = [:]
            for (viewer, row) in sockets.enumerated() {
                for (device, socket) in row.enumerated() { if let socket { owners[socket.descriptor] = (viewer, device) } }
            }
            self.owners = owners
        }

        func nowMs() -> Int64 {
            var spec = timespec()
            clock_gettime(CLOCK_MONOTONIC, &spec)
            return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
        }

        func run(proxy: FaultProxy) {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let descriptors = Array(owners.keys)
            while !proxy.isStopping {
                var polled = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                let now = nowMs()
                let timeout = pending.map { max(0, Int32($0.dueMs - now)) }.min().map { min($0, 50) } ?? 50
                _ = poll(&polled, nfds_t(polled.count), timeout)
                for entry in polled where entry.revents & Int16(POLLIN) != 0 {
                    var source = sockaddr_in()
                    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                    let count = buffer.withUnsafeMutableBytes { raw in
                        withUnsafeMutablePointer(to: &source) { pointer in
                            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(entry.fd, raw.baseAddress, 65_536, 0, $0, &length) }
                        }
                    }
                    // Only from the viewer itself: the proxy forwards nothing for anyone else.
                    guard count > 0, let owner = owners[entry.fd], Int(UInt16(bigEndian: source.sin_port)) == devicePorts[owner.viewer],
                        let exit = sockets[owner.device][owner.viewer]
                    else { continue }
                    let bytes = Array(buffer[0..<count])
                    for delay in proxy.deliveries(from: owner.viewer, to: owner.device) {
                        if delay == 0 {
                            send(bytes, from: exit.descriptor, to: devicePorts[owner.device])
                        } else {
                            pending.append((now + Int64(delay), exit.descriptor, devicePorts[owner.device], bytes))
                        }
                    }
                }
                let due = nowMs()
                let ready = pending.filter { $0.dueMs <= due }
                pending.removeAll { $0.dueMs <= due }
                for item in ready { send(item.bytes, from: item.descriptor, to: item.port) }
            }
            for descriptor in descriptors { close(descriptor) }
        }

        func send(_ bytes: [UInt8], from descriptor: Int32, to port: Int) {
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
    }
}

public struct FaultProxyError: Error, CustomStringConvertible {
    public var description: String
}
