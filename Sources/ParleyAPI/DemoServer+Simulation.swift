import Foundation
import Hummingbird
import HummingbirdWebSocket
import ParleyClient
import ParleyCore

/// A simulation the demo page started (`parley sim`'s, run in this process): its settings, the progress lines so far,
/// and its report once it ends.
struct DemoSimulation: Sendable {
    var settings: JSONValue = .null
    var isRunning = false
    var lines: [String] = []
    var report: JSONValue?
    var failure: String?
    var task: Task<Void, Never>?

    /// The most lines kept for the page.
    static let keptLines = 60

    var json: JSONValue {
        .object(
            JSONObject([
                "running": .bool(isRunning), "settings": settings, "lines": .array(lines.map(JSONValue.string)), "report": report ?? .null,
                "failure": failure.map(JSONValue.string) ?? .null,
            ]))
    }
}

extension DemoServer {
    /// What a simulation from the page may ask for: it runs in this process, beside the two nodes.
    static let simulationDevices: ClosedRange<Int64> = 2...12
    static let simulationSeconds: ClosedRange<Int64> = 1...60
    static let simulationRate: ClosedRange<Int64> = 1...100

    /// Starts a simulation with the body's settings: `transport` (`peers` or `bucket`), `devices`, `seconds`, `rate`
    /// (messages a second), `loss` and `files` (percent), each within the demo's bounds.
    /// - Throws: ``APIError`` `invalid_argument` for a setting out of bounds or while another runs.
    func startSimulation(_ fields: Fields) throws -> JSONValue {
        func integer(_ key: String, _ range: ClosedRange<Int64>, default value: Int64) throws -> Int64 {
            guard let field = fields.object[key], field != .null else { return value }
            guard let number = field.integerValue, range.contains(number) else {
                throw APIError(ClientError(.invalidArgument, "\"\(key)\" must be a whole number from \(range.lowerBound) to \(range.upperBound)."))
            }
            return number
        }
        let transportName = try fields.optionalString("transport") ?? "peers"
        guard let transport = Simulation.Transport(rawValue: transportName), transport != .relay else {
            throw APIError(ClientError(.invalidArgument, "\"transport\" must be peers or bucket."))
        }
        var settings = Simulation.Settings()
        settings.transport = transport
        settings.devices = Int(try integer("devices", Self.simulationDevices, default: 4))
        settings.seconds = Double(try integer("seconds", Self.simulationSeconds, default: 10))
        settings.rate = Double(try integer("rate", Self.simulationRate, default: 5))
        settings.loss = Double(try integer("loss", 0...50, default: 0)) / 100
        settings.fileShare = Double(try integer("files", 0...100, default: 0)) / 100
        settings.fileBytes = 32_768
        if transport == .bucket, settings.loss > 0 {
            throw APIError(ClientError(.invalidArgument, "Loss applies to peers: a bucket run takes no \"loss\"."))
        }
        let described: JSONValue = [
            "transport": .string(transport.rawValue), "devices": .integer(Int64(settings.devices)), "seconds": .integer(Int64(settings.seconds)),
            "rate": .integer(Int64(settings.rate)), "loss": .integer(Int64(settings.loss * 100)), "files": .integer(Int64(settings.fileShare * 100)),
        ]
        let started = simulation.withLock { run -> Bool in
            guard !run.isRunning else { return false }
            run = DemoSimulation(settings: described, isRunning: true)
            return true
        }
        guard started else {
            throw APIError(ClientError(.invalidArgument, "A simulation is running already.", remedy: "Wait for its report, then start another."))
        }
        let task = Task.detached { [self] in
            do {
                let report = try await Simulation(settings: settings).run { line in
                    self.simulation.withLock { run in
                        run.lines.append(line)
                        if run.lines.count > DemoSimulation.keptLines { run.lines.removeFirst() }
                    }
                    self.publishSimulation()
                }
                simulation.withLock {
                    $0.report = report.json
                    $0.isRunning = false
                }
            } catch {
                simulation.withLock {
                    $0.failure = ClientError(describing: error).message
                    $0.isRunning = false
                }
            }
            publishSimulation()
        }
        simulation.withLock { $0.task = task }
        publishSimulation()
        return simulation.withLock { $0.json }
    }

    /// Sends the simulation's state to every open page.
    func publishSimulation() {
        let message: JSONValue = ["simulation": simulation.withLock { $0.json }]
        for subscriber in traffic.withLock({ Array($0.subscribers.values) }) { subscriber.yield(message) }
    }

    func addSimulationRoutes(to demo: RouterGroup<BasicWebSocketRequestContext>) {
        demo.get("simulation") { _, _ in jsonResponse(self.simulation.withLock { $0.json }) }
        demo.post("simulation") { request, _ in
            let fields = try await Fields(of: request, maxBytes: 1 << 10)
            return jsonResponse(try self.startSimulation(fields), status: .accepted)
        }
    }
}
