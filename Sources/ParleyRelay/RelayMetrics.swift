import CoreMetrics
import Metrics
import Prometheus
import Synchronization

/// What the relay has done since it started: the snapshot tests and tools read (``RelayServer/counts``), and the same
/// figures as swift-metrics values in a registry of the relay's own (no global bootstrap), which `/metrics` exports in
/// Prometheus's text format. Dimensions take few values: a rejection's code, never a room or a user.
final class RelayMetrics: Sendable {
    /// One thing that happened, recorded once into both.
    enum Occurrence {
        case connectionOpened, connectionClosed
        case eventsIn(Int)
        case eventsOut(Int)
        case rejected(code: String, count: Int)
        case loginFailed, badFrame, slowConsumer
        /// Block bytes stored from uploads, and served to readers.
        case blockBytesIn(Int)
        case blockBytesOut(Int)
    }

    let registry = PrometheusCollectorRegistry()
    private let counts = Mutex(RelayServer.Counters())
    private let factory: PrometheusMetricsFactory
    private let open: CoreMetrics.Gauge
    private let connections: CoreMetrics.Counter
    private let eventsIn: CoreMetrics.Counter
    private let eventsOut: CoreMetrics.Counter
    private let loginFailures: CoreMetrics.Counter
    private let badFrames: CoreMetrics.Counter
    private let slowConsumers: CoreMetrics.Counter
    private let blockBytesIn: CoreMetrics.Counter
    private let blockBytesOut: CoreMetrics.Counter
    /// From a publish frame's arrival to its events queued for every reader.
    let fanOut: CoreMetrics.Timer

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(1000),
        ]
        self.factory = factory
        open = CoreMetrics.Gauge(label: "parley_relay_connections", factory: factory)
        connections = CoreMetrics.Counter(label: "parley_relay_connections_total", factory: factory)
        eventsIn = CoreMetrics.Counter(label: "parley_relay_events_in_total", factory: factory)
        eventsOut = CoreMetrics.Counter(label: "parley_relay_events_out_total", factory: factory)
        loginFailures = CoreMetrics.Counter(label: "parley_relay_login_failures_total", factory: factory)
        badFrames = CoreMetrics.Counter(label: "parley_relay_bad_frames_total", factory: factory)
        slowConsumers = CoreMetrics.Counter(label: "parley_relay_slow_consumers_total", factory: factory)
        blockBytesIn = CoreMetrics.Counter(label: "parley_relay_block_bytes_total", dimensions: [("direction", "in")], factory: factory)
        blockBytesOut = CoreMetrics.Counter(label: "parley_relay_block_bytes_total", dimensions: [("direction", "out")], factory: factory)
        fanOut = CoreMetrics.Timer(label: "parley_relay_fanout_seconds", factory: factory)
    }

    func record(_ occurrence: Occurrence) {
        switch occurrence {
        case .connectionOpened:
            let now = counts.withLock { counts in
                counts.connections += 1
                counts.open += 1
                return counts.open
            }
            connections.increment()
            open.record(now)
        case .connectionClosed:
            open.record(
                counts.withLock { counts in
                    counts.open -= 1
                    return counts.open
                })
        case .eventsIn(let count):
            counts.withLock { $0.eventsIn += count }
            eventsIn.increment(by: count)
        case .eventsOut(let count):
            counts.withLock { $0.eventsOut += count }
            eventsOut.increment(by: count)
        case .rejected(let code, let count):
            counts.withLock { $0.rejections[code, default: 0] += count }
            CoreMetrics.Counter(label: "parley_relay_rejections_total", dimensions: [("reason", code)], factory: factory).increment(by: count)
        case .loginFailed:
            counts.withLock { $0.loginFailures += 1 }
            loginFailures.increment()
        case .badFrame:
            counts.withLock { $0.badFrames += 1 }
            badFrames.increment()
        case .slowConsumer:
            counts.withLock { $0.slowConsumers += 1 }
            slowConsumers.increment()
        case .blockBytesIn(let bytes):
            counts.withLock { $0.blockBytesIn += bytes }
            blockBytesIn.increment(by: bytes)
        case .blockBytesOut(let bytes):
            counts.withLock { $0.blockBytesOut += bytes }
            blockBytesOut.increment(by: bytes)
        }
    }

    var snapshot: RelayServer.Counters { counts.withLock { $0 } }

    /// The Prometheus text exposition of every metric.
    func text() -> String { registry.emitToString() }
}
