import Foundation
import GRDB
import ParleyCore

extension EventStore {
    /// For the newest `limit` messages `chainKey`'s device sent in `roomID` (plain, or sealed and opened), how long
    /// after each message every other device's first receipt covered it: one figure per message and device that
    /// acknowledged it; and how many message-and-device pairs no receipt covers yet.
    public func deliveryLatencies(roomID: String, chainKey: String, devices: Set<String>, limit: Int) throws -> (latenciesMs: [Int64], awaiting: Int, read: Int)
    {
        try pool.read { db in
            let messages = try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT e.seq, e.timestamp_ms FROM events e LEFT JOIN plaintexts p ON p.event_row = e.id
                        WHERE e.room_id = ? AND e.sender_key = ? AND e.status = 0 AND e.redacted = 0
                            AND COALESCE(p.type, e.type) = 'm.room.message'
                        ORDER BY e.seq DESC LIMIT ?
                        """), arguments: [roomID, chainKey, limit]
            ).map { (seq: $0[0] as Int64, timestampMs: $0[1] as Int64) }
            guard let oldest = messages.last?.seq else { return ([], 0, 0) }
            // Per reader and kind, the earliest time a receipt's head reached each place (valid heads only, as
            // `receiptsCovering` counts them); a message is covered by every head at or after it.
            var heads: [String: [(seq: Int64, atMs: Int64, read: Bool)]] = [:]
            for row in try Row.fetchAll(
                db.cachedStatement(
                    sql: """
                        SELECT h.reader_key, h.seq, MIN(r.timestamp_ms), MAX(h.kind = 'read') FROM receipt_heads h
                            JOIN events c ON c.room_id = h.room_id AND c.sender_key = h.chain_key AND c.seq = h.seq AND c.hash = h.hash
                            JOIN events r ON r.id = h.receipt_row
                        WHERE h.room_id = ? AND h.chain_key = ? AND h.seq >= ? AND r.status = 0 AND r.redacted = 0
                        GROUP BY h.reader_key, h.seq
                        """), arguments: [roomID, chainKey, oldest])
            {
                heads[row[0], default: []].append((row[1], row[2], row[3]))
            }
            var latencies: [Int64] = []
            var awaiting = 0
            var read = 0
            for reader in devices where reader != chainKey {
                // Ascending by place, with the earliest time from each place on (a later head covers earlier places).
                let places = (heads[reader] ?? []).sorted { $0.seq < $1.seq }
                var earliest = places.map(\.atMs)
                var anyRead = places.map(\.read)
                for index in earliest.indices.dropLast().reversed() {
                    earliest[index] = min(earliest[index], earliest[index + 1])
                    anyRead[index] = anyRead[index] || anyRead[index + 1]
                }
                for message in messages {
                    var low = 0
                    var high = places.count
                    while low < high {
                        let middle = (low + high) / 2
                        if places[middle].seq < message.seq { low = middle + 1 } else { high = middle }
                    }
                    guard low < places.count else {
                        awaiting += 1
                        continue
                    }
                    latencies.append(max(0, earliest[low] - message.timestampMs))
                    if anyRead[low] { read += 1 }
                }
            }
            return (latencies, awaiting, read)
        }
    }
}

extension EventStore {
    /// The rooms of the newest `scan` events, newest first: the rooms active lately, read from the end of the table
    /// rather than by grouping all of it.
    public func recentlyActiveRooms(scan: Int = 10_000, limit: Int) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT room_id FROM (SELECT room_id, id FROM events ORDER BY id DESC LIMIT ?) GROUP BY room_id ORDER BY MAX(id) DESC LIMIT ?
                    """, arguments: [scan, limit])
        }
    }
}

/// A Prometheus summary of delivery latencies (ms): its quantile, sum and count lines.
public enum LatencySummary {
    /// The quantiles reported.
    public static let quantiles = [0.5, 0.95, 0.99]

    /// The sample lines of summary `name` over `latenciesMs`, each with `labels` (`transport="bucket",` or empty);
    /// none but the sum and count when there is no figure.
    public static func lines(_ name: String, labels: String, latenciesMs: [Int64]) -> [String] {
        let sorted = latenciesMs.sorted()
        var lines: [String] = []
        for quantile in quantiles where !sorted.isEmpty {
            let index = min(sorted.count - 1, Int((quantile * Double(sorted.count)).rounded(.up)) - 1)
            lines.append("\(name){\(labels)quantile=\"\(quantile)\"} \(seconds(sorted[max(0, index)]))")
        }
        let plain = labels.isEmpty ? "" : "{\(labels.dropLast())}"
        lines.append("\(name)_sum\(plain) \(seconds(sorted.reduce(0, +)))")
        lines.append("\(name)_count\(plain) \(sorted.count)")
        return lines
    }

    /// Milliseconds as seconds, without a trailing `.0`.
    public static func seconds(_ ms: Int64) -> String {
        let text = String(Double(ms) / 1000)
        return text.hasSuffix(".0") ? String(text.dropLast(2)) : text
    }
}
