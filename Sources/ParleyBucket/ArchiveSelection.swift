import ParleyCore

/// Which archive parts a reader uses (docs/PROTOCOL.md §13.9.5 steps 1–3): of the verified manifests found, one
/// complete set per day, the one covering the most events; manifests of a day that ended less than the lateness ago
/// are not used.
public struct ArchiveSelection: Sendable, Equatable {
    /// A group of manifests that is no usable set, and why.
    public struct Refusal: Sendable, Equatable {
        /// Its manifests' keys, sorted bytewise.
        public var keys: [String]
        public var error: ArchiveError

        public init(keys: [String], error: ArchiveError) {
            self.keys = keys
            self.error = error
        }
    }

    /// Per day (YYYY-MM-DD), the chosen set's manifests, by part.
    public private(set) var chosen: [String: [ArchiveManifest]] = [:]
    /// Groups refused, ordered by their first key.
    public private(set) var refused: [Refusal] = []
    /// Keys of manifests of days too recent to use, sorted.
    public private(set) var ignored: [String] = []

    /// How long after a day ends its archives are used: files may still arrive until then (docs/PROTOCOL.md §13.9.6).
    public static let latenessMs: Int64 = 3_600_000

    /// Whether archives of the day `ms` falls in may be used at `nowMs`.
    public static func isPast(dayOf ms: Int64, nowMs: Int64, latenessMs: Int64 = latenessMs) -> Bool {
        nowMs >= BucketLayout.endOfDayMs(ms) + latenessMs
    }

    /// - Parameter manifests: verified manifests (``ArchiveManifest/init(parsing:name:listedSize:)``), any order.
    public init(_ manifests: [ArchiveManifest], nowMs: Int64, latenessMs: Int64 = latenessMs) {
        struct Group: Hashable {
            var date: String
            var clientID: String
            var signer: String
            var parts: Int
        }
        var groups: [Group: [ArchiveManifest]] = [:]
        for manifest in manifests {
            guard Self.isPast(dayOf: manifest.firstMs, nowMs: nowMs, latenessMs: latenessMs) else {
                ignored.append(manifest.name.manifestKey)
                continue
            }
            groups[Group(date: manifest.date, clientID: manifest.name.clientID, signer: manifest.signer, parts: manifest.parts), default: []]
                .append(manifest)
        }
        ignored.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var best: [String: (events: Int, parts: [ArchiveManifest])] = [:]
        let ordered = groups.map { ($0.key, $0.value.sorted { $0.name.manifestKey.utf8.lexicographicallyPrecedes($1.name.manifestKey.utf8) }) }
            .sorted { $0.1[0].name.manifestKey.utf8.lexicographicallyPrecedes($1.1[0].name.manifestKey.utf8) }
        for (group, members) in ordered {
            let keys = members.map(\.name.manifestKey)
            let parts = members.sorted { $0.part < $1.part }
            guard parts.map(\.part) == Array(1...group.parts) else {
                refused.append(Refusal(keys: keys, error: ArchiveError(.setIncomplete, "the set has not exactly one manifest of each part 1…\(group.parts)")))
                continue
            }
            if let overlap = Self.overlap(parts) {
                refused.append(Refusal(keys: keys, error: ArchiveError(.setOverlap, overlap)))
                continue
            }
            let events = parts.reduce(0) { $0 + $1.events }
            let first = parts[0].name.manifestKey
            if let current = best[group.date],
                current.events > events
                    || (current.events == events && current.parts[0].name.manifestKey.utf8.lexicographicallyPrecedes(first.utf8))
            {
                continue
            }
            best[group.date] = (events, parts)
        }
        chosen = best.mapValues(\.parts)
    }

    /// Why the parts of a set overlap (a file in two parts, or two runs of one device's chain that meet), or `nil`.
    static func overlap(_ parts: [ArchiveManifest]) -> String? {
        var names = Set<String>()
        for file in parts.flatMap(\.files) where !names.insert(file.name).inserted {
            return "\(file.name) is in two parts of the set"
        }
        let runs = parts.flatMap(\.chains).sorted { ($0.senderKey, $0.firstSeq) < ($1.senderKey, $1.firstSeq) }
        for (earlier, later) in zip(runs, runs.dropFirst()) where earlier.senderKey == later.senderKey && later.firstSeq <= earlier.lastSeq {
            return "two parts of the set hold seq \(later.firstSeq) of one device"
        }
        return nil
    }
}
