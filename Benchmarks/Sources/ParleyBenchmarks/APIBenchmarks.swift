import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOHTTP1
import ParleyAPI
@_spi(Tools) import ParleyClient
import ParleyCore
import Synchronization

/// When each event id arrived on a stream, in `now()` seconds.
final class Arrivals: Sendable {
    let times = Mutex<[String: Double]>([:])
    let ready = Mutex(false)

    var count: Int { times.withLock { $0.count } }
}

/// Follows a node's stream, noting when each new item arrives, until cancelled.
func follow(url: String, token: String, into arrivals: Arrivals) -> Task<Void, any Error> {
    Task {
        try await WebSocketClient.connect(
            url: url, configuration: .init(additionalHeaders: [.authorization: "Bearer \(token)"]), logger: Logger(label: "bench.ws")
        ) { inbound, _, _ in
            for try await message in inbound.messages(maxSize: 1 << 20) {
                let arrived = now()
                guard case .text(let text) = message, let value = try? JSONParser(keysWithinBMP: false).parse(Array(text.utf8)) else { continue }
                switch value["type"]?.stringValue {
                case "ready": arrivals.ready.withLock { $0 = true }
                case "item:new":
                    if let id = value["item"]?["event_id"]?.stringValue { arrivals.times.withLock { $0[id] = arrived } }
                default: break
                }
            }
        }
    }
}

/// Sends one message through a node's API; returns its event id.
func apiSend(_ base: String, token: String, room: String, text: String) async throws -> String {
    var request = HTTPClientRequest(url: "\(base)/v1/rooms/\(room)/messages")
    request.method = .POST
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.body = .bytes(CanonicalJSON.encode(["text": .string(text)]))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let body = try await response.body.collect(upTo: 1 << 20)
    guard response.status == .created, let id = try JSONParser().parse(body.readableBytesView)["event_id"]?.stringValue else {
        throw BenchError("send answered \(response.status)")
    }
    return id
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits until `condition` holds, for at most `seconds`.
func waitFor(seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = now() + seconds
    while !condition() && now() < deadline { try? await Task.sleep(for: .milliseconds(1)) }
    return condition()
}

/// Sends `messages` through `sendBase` at `rate` a second; returns each one's time from the request to its arrival
/// on the stream `arrivals` follows, in milliseconds, sorted.
func paced(messages: Int, rate: Double, sendBase: String, token: String, room: String, arrivals: Arrivals, timeout: Double) async throws -> [Double] {
    var sentAt: [String: Double] = [:]
    let start = now()
    for index in 0..<messages {
        let wait = start + Double(index) / rate - now()
        if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
        let sent = now()
        sentAt[try await apiSend(sendBase, token: token, room: room, text: "latency probe \(index)")] = sent
    }
    _ = await waitFor(seconds: timeout) { arrivals.times.withLock { times in sentAt.keys.allSatisfy { times[$0] != nil } } }
    let times = arrivals.times.withLock { $0 }
    let missing = sentAt.keys.filter { times[$0] == nil }.count
    if missing > 0 { print("warning: \(missing) of \(messages) messages never arrived on the stream") }
    return sentAt.compactMap { id, sent in times[id].map { ($0 - sent) * 1000 } }.sorted()
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.down)))]
}

/// One node, its API in this process: send over HTTP → another client's stream; and sends a second, sustained.
func apiBenchmarks(workdir: String, messages: Int) async throws {
    let node = benchNode(workdir + "/api", "alice")
    _ = try node.createRoom("bench")
    let token = LocalAPI.newToken()
    var quiet = Logger(label: "bench.api")
    quiet.logLevel = .error
    let api = LocalAPI(client: BucketClient(node: node), logger: quiet, token: token)
    let server = Task { try await api.run() }
    defer { server.cancel() }
    guard let port = await api.port() else { throw BenchError("the API did not start") }
    let base = "http://127.0.0.1:\(port)"
    let arrivals = Arrivals()
    let stream = follow(url: "ws://127.0.0.1:\(port)/v1/stream", token: token, into: arrivals)
    defer { stream.cancel() }
    guard await waitFor(seconds: 10, { arrivals.ready.withLock { $0 } }) else { throw BenchError("the stream did not open") }

    let latencies = try await paced(messages: messages, rate: 200, sendBase: base, token: token, room: "bench", arrivals: arrivals, timeout: 10)
    let (p50, p99) = (percentile(latencies, 0.5), percentile(latencies, 0.99))
    record("local API: HTTP send → another client's stream, p50 at 200 msg/s (\(latencies.count) messages)", p50, "ms", target: "≤ 1 ms", met: p50 <= 1)
    record("local API: HTTP send → another client's stream, p99 at 200 msg/s", p99, "ms", target: "≤ 5 ms", met: p99 <= 5)

    // As many sends as 16 clients at once get through in 5 s, each waiting for its answer.
    let seconds = 5.0
    let started = now()
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for client in 0..<16 {
            group.addTask {
                var sent = 0
                while now() - started < seconds {
                    _ = try await apiSend(base, token: token, room: "bench", text: "sustained \(client) \(sent)")
                    sent += 1
                }
                return sent
            }
        }
        return try await group.reduce(0, +)
    }
    let rate = Double(total) / (now() - started)
    record("local API: sends sustained (16 clients, each waiting for its answer)", rate, "/s", target: "≥ 1,000/s", met: rate >= 1_000)
}

/// Runs the `parley` executable to its end and returns its standard output.
func capture(_ parley: String, home: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: parley)
    process.arguments = ["--home", home] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw BenchError("parley \(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    return String(decoding: data, as: UTF8.self)
}

/// A running `parley node` and where its API is.
struct NodeProcess {
    let process: Process
    let base: String
    let token: String

    static func start(_ parley: String, home: String, _ arguments: [String] = []) async throws -> NodeProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: parley)
        process.arguments = ["--home", home, "node"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var info: JSONValue?
        _ = await waitFor(seconds: 30) {
            info = (try? Data(contentsOf: URL(fileURLWithPath: "\(home)/node.json"))).flatMap { try? JSONParser().parse(Array($0).dropLast()) }
            return info?["pid"]?.integerValue == Int64(process.processIdentifier)
        }
        guard let base = info?["url"]?.stringValue, let token = info?["token"]?.stringValue else { throw BenchError("parley node did not start") }
        return NodeProcess(process: process, base: base, token: token)
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

/// Two `parley node`s on one folder bucket: send through one's API → the other's stream; then an idle node with 20
/// bucket rooms: its CPU and memory.
func nodeBenchmarks(workdir: String, parley: String, messages: Int) async throws {
    let directory = workdir + "/nodes"
    try? FileManager.default.removeItem(atPath: directory)
    let (alice, bob, bucket) = ("\(directory)/alice", "\(directory)/bob", "file://\(directory)/bucket")
    _ = try capture(parley, home: alice, ["init", "--user", "alice"])
    _ = try capture(parley, home: bob, ["init", "--user", "bob"])
    _ = try capture(parley, home: alice, ["room", "create", "team", "--bucket", bucket, "--create-bucket"])
    let bobKey = try JSONParser().parse(Array(try capture(parley, home: bob, ["whoami", "--json"]).utf8).dropLast())["signing_key"]!.stringValue!
    let invite = try JSONParser().parse(Array(try capture(parley, home: alice, ["room", "invite", "team", "bob", "--key", bobKey, "--json"]).utf8).dropLast())
    _ = try capture(parley, home: bob, ["room", "join", invite["invite_code"]!.stringValue!])

    let sender = try await NodeProcess.start(parley, home: alice)
    let receiver = try await NodeProcess.start(parley, home: bob)
    let arrivals = Arrivals()
    let stream = follow(url: receiver.base.replacingOccurrences(of: "http:", with: "ws:") + "/v1/stream", token: receiver.token, into: arrivals)
    guard await waitFor(seconds: 10, { arrivals.ready.withLock { $0 } }) else { throw BenchError("the stream did not open") }
    let latencies = try await paced(messages: messages, rate: 5, sendBase: sender.base, token: sender.token, room: "team", arrivals: arrivals, timeout: 30)
    stream.cancel()
    sender.stop()
    receiver.stop()
    let (p50, p99) = (percentile(latencies, 0.5), percentile(latencies, 0.99))
    record(
        "two parley nodes, folder bucket (watched; poll interval 1 s): send → other node's stream, p50 (\(latencies.count) messages at 5/s)", p50, "ms",
        target: "≤ 300 ms",
        met: p50 <= 300)
    record("two parley nodes, folder bucket (watched; poll interval 1 s): send → other node's stream, p99", p99, "ms", target: "≤ 600 ms", met: p99 <= 600)

    // Idle: 20 bucket rooms, nothing happening; after 5 s of settling, 30 s of CPU and the resident memory.
    for index in 0..<19 { _ = try capture(parley, home: alice, ["room", "create", "idle-\(index)", "--bucket", bucket]) }
    let idle = try await NodeProcess.start(parley, home: alice)
    try await Task.sleep(for: .seconds(5))
    let pid = idle.process.processIdentifier
    let before = processCPUSeconds(pid)
    let window = 30.0
    try await Task.sleep(for: .seconds(window))
    let cpu = (processCPUSeconds(pid) - before) / window * 100
    let rss = processRSSKiB(pid)
    idle.stop()
    record("idle parley node, 20 folder-bucket rooms (watched; listed every 30 s, 1 s unwatched): CPU", cpu, "% of a core", target: "≤ 1%", met: cpu <= 1)
    record("idle parley node, 20 bucket rooms: resident memory", Double(rss) / 1024, "MiB", target: "≤ 30 MiB", met: Double(rss) / 1024 <= 30)
}

/// User and system CPU seconds a process has used so far (`/proc/PID/stat`).
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    // After the command: state is field 3, utime field 14 and stime field 15 (1-based, counting pid and command).
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A process's resident memory now, in KiB (`VmRSS` of `/proc/PID/status`).
func processRSSKiB(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
}
