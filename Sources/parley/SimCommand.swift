import ArgumentParser
import Foundation
import Logging
import ParleyClient
import ParleyRelay

struct SimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim",
        abstract: "Simulate many devices chatting over peers, a bucket or a relay, through a faulty network, and report latency, convergence and cost.",
        discussion: """
            Runs --devices nodes in this process, each with its own home and store in a temporary folder, all members \
            of --rooms rooms. Over --transport peers they sync over UDP on 127.0.0.1 through a proxy that loses, \
            duplicates and reorders datagrams (directly, when no fault is asked for); over --transport bucket each \
            runs its node as `parley node` does against one folder bucket, over a link that goes down while the \
            device is offline; over --transport relay a relay runs in this process and each device has an account \
            there (no faults: the link is TCP). Messages go out at --rate a second from random devices for --seconds; --files percent \
            of them share a file of --file-size bytes, which every other device fetches. --partition cuts the first \
            half of the devices off from the rest (from a bucket, for a bucket) for that many seconds, from a quarter \
            of the run; --offline takes that percentage of devices off the network at random, toggled every second; --down DEVICE:FROM-TO takes one \
            off on a schedule. \
            At the end the network heals and the devices must come to hold the same events.

            Reports each message's delivery latency to each other device (p50, p95, p99) and each file's (until all \
            its blocks are there), how long after the partition healed every device held the same events, datagrams \
            (or bucket requests) and bytes per message, and whether every device ended with the same events and room \
            state. --json prints the same as one JSON object.
            """)
    @Option(help: "Devices, 2 to 64.") var devices = 4
    @Option(help: "Rooms every device is a member of, 1 to 16.") var rooms = 1
    @Option(help: "The transport: peers, bucket or relay (run in this process).") var transport = "peers"
    @Option(help: "Messages a second, all devices together.") var rate = 5.0
    @Option(help: "Percent of datagrams lost.") var loss = 0.0
    @Option(help: "Percent of datagrams duplicated.") var duplicate = 0.0
    @Option(help: "Percent of datagrams held back 5–40 ms, so that they arrive after later ones.") var reorder = 0.0
    @Option(help: "Seconds the first half of the devices is cut off from the rest.") var partition: Double?
    @Option(help: "Percent of devices offline at any time, toggled at random every second.") var offline = 0.0
    @Option(help: "A device offline on a schedule: DEVICE:FROM-TO, seconds into the run (as 2:5-15); repeat for more.") var down: [String] = []
    @Option(help: "Seconds of sending.") var seconds = 10.0
    @Option(help: "Percent of messages that share a file.") var files = 0.0
    @Option(name: .customLong("file-size"), help: "Bytes of each file shared, 1 to 67108864.") var fileSize = 65_536
    @Option(help: "How peers find what the other lacks: reconcile or bloom.") var sync = "reconcile"
    @Option(help: "Seconds between each device's syncs with each peer.") var interval = 1.0
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard (2...64).contains(devices) else { throw ValidationError("--devices must be from 2 to 64; it was \(devices).") }
        guard (1...16).contains(rooms) else { throw ValidationError("--rooms must be from 1 to 16; it was \(rooms).") }
        guard let transport = Simulation.Transport(rawValue: transport) else {
            throw ValidationError("--transport \(TerminalText.escape(transport)) is not simulated; give peers, bucket or relay.")
        }
        if transport == .relay, loss > 0 || duplicate > 0 || reorder > 0 || offline > 0 || partition != nil {
            throw ValidationError(
                "A relay run takes no faults: its clients' link is TCP, which resends what is lost; --offline and --partition are for peers and a bucket."
            )
        }
        if transport == .bucket, loss > 0 || duplicate > 0 || reorder > 0 {
            throw ValidationError("--loss, --duplicate and --reorder are datagram faults, for --transport peers; a bucket run takes --offline and --partition.")
        }
        for text in down {
            guard let downtime = Simulation.Downtime(parsing: text) else {
                throw ValidationError("--down takes DEVICE:FROM-TO in seconds, as 2:5-15; it was \(TerminalText.escape(text)).")
            }
            guard downtime.device < devices else { throw ValidationError("--down names device \(downtime.device); the devices are 0 to \(devices - 1).") }
        }
        if transport == .relay, !down.isEmpty { throw ValidationError("A relay run takes no faults: --down is for peers and a bucket.") }
        guard (0...100).contains(files) else { throw ValidationError("--files is a percentage, from 0 to 100; it was \(files).") }
        guard (1...(64 << 20)).contains(fileSize) else { throw ValidationError("--file-size must be from 1 to 67108864 bytes; it was \(fileSize).") }
        guard rate > 0 && rate <= 10_000 else { throw ValidationError("--rate must be above 0 and at most 10000 messages a second.") }
        for (name, value) in [("--loss", loss), ("--duplicate", duplicate), ("--reorder", reorder), ("--offline", offline)] where !(0...100).contains(value) {
            throw ValidationError("\(name) is a percentage, from 0 to 100; it was \(value).")
        }
        guard seconds > 0 && seconds <= 86_400 else { throw ValidationError("--seconds must be above 0 and at most 86400.") }
        if let partition, !(partition > 0 && partition <= 86_400) { throw ValidationError("--partition must be above 0 and at most 86400 seconds.") }
        guard PeerSettings.Mode(rawValue: sync) != nil else { throw ValidationError("--sync must be reconcile or bloom; it was \(TerminalText.escape(sync)).") }
        guard interval >= 0.05 && interval <= 3_600 else { throw ValidationError("--interval must be from 0.05 to 3600 seconds.") }
    }

    func run() async throws {
        var settings = Simulation.Settings()
        settings.transport = Simulation.Transport(rawValue: transport) ?? .peers
        settings.fileShare = files / 100
        settings.fileBytes = fileSize
        settings.devices = devices
        settings.rooms = rooms
        settings.rate = rate
        settings.loss = loss / 100
        settings.duplication = duplicate / 100
        settings.reordering = reorder / 100
        settings.partitionSeconds = partition
        settings.offline = offline / 100
        settings.downtimes = down.compactMap(Simulation.Downtime.init(parsing:))
        settings.seconds = seconds
        settings.peers.mode = PeerSettings.Mode(rawValue: sync) ?? .reconcile
        settings.peers.intervalMs = Int64(interval * 1000)
        let onTerminal = isatty(STDERR_FILENO) == 1
        let report = try await failingAsync {
            guard settings.transport == .relay else { return try await Simulation(settings: settings).run { line in if onTerminal { printError(line) } } }
            // The relay runs in this process, on a free port of 127.0.0.1, its data in a folder removed afterwards.
            let data = FileManager.default.temporaryDirectory.appendingPathComponent("parley-sim-relay-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: data) }
            var relaySettings = RelaySettings(dataDirectory: data)
            relaySettings.port = 0
            let relay = try RelayServer(settings: relaySettings, logger: Logger(label: "parley.sim.relay", factory: { _ in SwiftLogNoOpLogHandler() }))
            let running = Task { try await relay.run() }
            defer { running.cancel() }
            guard let port = await relay.port() else {
                let reason = (try? await running.value).map { "it stopped" } ?? "it could not listen"
                throw ClientError(
                    .io, "The simulation's relay did not start: \(reason) on 127.0.0.1 with its data in \(data).",
                    remedy: "Check that the temporary folder is writable, or simulate over peers or a bucket.")
            }
            settings.relay = "http://127.0.0.1:\(port)"
            return try await Simulation(settings: settings).run { line in if onTerminal { printError(line) } }
        }
        if json {
            printJSON(report.json)
            return
        }
        func ms(_ value: Int64?) -> String { value.map { "\($0) ms" } ?? "never" }
        output(
            "\(report.devices) devices, \(report.rooms) room(s), \(report.messages) messages over \(settings.transport == .peers ? "peers (\(sync))" : settings.transport == .bucket ? "a folder bucket" : "a relay")"
        )
        output("delivered: \(report.deliveries) of \(report.deliveries + report.undelivered) message-and-device pairs")
        output("latency: p50 \(ms(report.percentile(0.5))), p95 \(ms(report.percentile(0.95))), p99 \(ms(report.percentile(0.99)))")
        if report.files > 0 {
            output(
                "files: \(report.files) shared, \(report.fileLatenciesMs.count) of \(report.fileLatenciesMs.count + report.filesUndelivered) file-and-device pairs fetched; p50 \(ms(report.filePercentile(0.5))), p95 \(ms(report.filePercentile(0.95))), p99 \(ms(report.filePercentile(0.99)))"
            )
        }
        if partition != nil { output("converged after the partition healed: \(ms(report.convergedAfterHealMs))") }
        output("converged after sending stopped: \(ms(report.convergedAtEndMs))")
        if settings.transport == .relay {
            output("the relay's traffic is not counted: to measure it, run `parley relay serve` and read its /metrics while `parley node`s use it")
        } else if settings.transport == .bucket {
            output(
                "bucket: \(report.requests) requests, \(report.bytes) bytes (\(Int((Double(report.bytes) / Double(max(1, report.messages))).rounded())) bytes per message)"
            )
        } else {
            output(
                "on the wire: \(report.datagrams) datagrams, \(report.bytes) bytes (\(String(format: "%.1f", report.datagramsPerEvent)) datagrams, \(Int(report.bytesPerEvent.rounded())) bytes per message; \(report.syncBytes) bytes of syncing); the proxy dropped \(report.proxyDropped)"
            )
        }
        output("same events on every device: \(report.sameEvents ? "yes" : "NO"); same room state: \(report.sameState ? "yes" : "NO")")
        if !report.sameEvents || !report.sameState { throw ExitCode(1) }
    }
}
