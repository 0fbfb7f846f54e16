import ParleyBucket
import ParleyCore
import ParleyTesting
import Testing

/// One part of docs/vectors/archives.json: a manifest and a stored body as a reader finds them.
struct ArchivePartVector: CustomStringConvertible, Sendable {
    let name: String
    let manifestKey: String
    let listedManifestSize: Int64
    let manifest: [UInt8]
    let listedBodySize: Int64?
    let body: [UInt8]
    let error: String?
    let json: JSONValue
    var description: String { name }

    static let roomID = "general"

    static func load(_ section: String) throws -> [ArchivePartVector] {
        try Vectors.load("archives.json")[section]!.array.map { item in
            ArchivePartVector(
                name: item["name"]!.text, manifestKey: item["manifest_key"]!.text, listedManifestSize: item["listed_manifest_size"]!.integerValue!,
                manifest: Array(item["manifest"]!.text.utf8), listedBodySize: item["listed_body_size"]!.integerValue,
                body: Base64.decode(item["body"]!.text)!, error: item["error"]?.stringValue, json: item)
        }
    }

    /// Every check of docs/PROTOCOL.md §13.9.4, as a reader makes them.
    func read() throws(ArchiveError) -> (ArchiveManifest, [VerifiedEvent]) {
        guard case .success(let (name, kind)) = ArchiveName.parse(key: manifestKey, roomID: Self.roomID), kind == .manifest else {
            preconditionFailure("the vector's key \(manifestKey) is no manifest key")
        }
        let manifest = try ArchiveManifest(parsing: manifest, name: name, listedSize: listedManifestSize)
        return (manifest, try ArchiveCheck.read(body: body, listedSize: listedBodySize, manifest: manifest))
    }
}

@Suite struct ArchiveVectorTests {
    @Test func `archive keys name what the vectors say, and keys of any other form are no archive objects`() throws {
        let keys = try Vectors.load("archives.json")["keys"]!
        for item in keys["valid"]!.array {
            let parsed = try ArchiveName.parse(key: item["key"]!.text, roomID: ArchivePartVector.roomID).get()
            #expect(parsed.kind == (item["kind"]!.text == "manifest" ? .manifest : .body))
            #expect(parsed.name.date == item["date"]!.text)
            #expect(parsed.name.firstMs == item["first_ts"]!.integerValue && parsed.name.lastMs == item["last_ts"]!.integerValue)
            #expect(parsed.name.clientID == item["client_id"]!.text)
            #expect((parsed.kind == .manifest ? parsed.name.manifestKey : parsed.name.bodyKey) == item["key"]!.text)
        }
        for key in keys["invalid"]!.array.map(\.text) {
            guard case .failure = ArchiveName.parse(key: key, roomID: ArchivePartVector.roomID) else {
                Issue.record("\(key) parsed as an archive object")
                continue
            }
        }
    }

    @Test(arguments: try ArchivePartVector.load("valid"))
    func `a valid part reads back exactly as the vector gives it`(vector: ArchivePartVector) throws {
        let (manifest, events) = try vector.read()
        #expect(manifest.signingInput == Array(vector.json["signing_input"]!.text.utf8))
        #expect(manifest.encoded() == vector.manifest)
        let lines = vector.json["body_lines"]!.array.map(\.text)
        #expect(events.map { String(decoding: $0.wire, as: UTF8.self) } == lines)
        #expect(try ArchiveBody.inflate(vector.body, manifest: manifest) == Array(lines.map { $0 + "\n" }.joined().utf8))
        #expect(manifest.body.sha256 == vector.json["body_sha256"]!.text)
        let covers = vector.json["covers"]!
        #expect(manifest.events == Int(covers["events"]!.integerValue!) && events.count == manifest.events)
        #expect(manifest.firstMs == covers["first_ts"]!.integerValue && manifest.lastMs == covers["last_ts"]!.integerValue)
        #expect(manifest.date == covers["date"]!.text && manifest.signer == covers["signer"]!.text)
        #expect(manifest.part == Int(covers["part"]!.integerValue!) && manifest.parts == Int(covers["parts"]!.integerValue!))
        #expect(
            manifest.chains
                == covers["chains"]!.array.map {
                    ArchiveManifest.Chain(senderKey: $0["sender"]!.text, firstSeq: $0["first_seq"]!.integerValue!, lastSeq: $0["last_seq"]!.integerValue!)
                })
        #expect(manifest.files.map { $0.key(roomID: ArchivePartVector.roomID) } == covers["files"]!.array.map(\.text))
    }

    @Test(arguments: try ArchivePartVector.load("invalid"))
    func `a part that breaks one rule fails with that rule's code`(vector: ArchivePartVector) {
        do {
            _ = try vector.read()
            Issue.record("read without an error; expected \(vector.error ?? "?")")
        } catch {
            #expect(error.code.rawValue == vector.error, "\(error)")
        }
    }

    @Test func `readers choose the sets the vectors choose, refuse the same groups, and leave days too recent alone`() throws {
        for scenario in try Vectors.load("archives.json")["selections"]!.array {
            let name = scenario["name"]!.text
            let manifests = try scenario["manifests"]!.array.map { item in
                let key = item["key"]!.text
                return try ArchiveManifest(
                    parsing: Array(item["manifest"]!.text.utf8), name: try ArchiveName.parse(key: key, roomID: ArchivePartVector.roomID).get().name)
            }
            let selection = ArchiveSelection(manifests, nowMs: scenario["now_ms"]!.integerValue!)
            let chosen = selection.chosen.mapValues { $0.map(\.name.manifestKey) }
            let expected = scenario["chosen"]!.objectValue!.members.map { ($0.key, $0.value.array.map(\.text)) }
            #expect(chosen == Dictionary(uniqueKeysWithValues: expected), "\(name)")
            #expect(
                selection.refused.map { [$0.error.code.rawValue] + $0.keys }
                    == scenario["refused"]!.array.map { [$0["error"]!.text] + $0["keys"]!.array.map(\.text) }, "\(name)")
            #expect(selection.ignored == scenario["ignored"]!.array.map(\.text), "\(name)")
        }
    }

    @Test func `the vectors hold a failing case for every code a reader can tell from the bucket alone`() throws {
        let vectors = try Vectors.load("archives.json")
        var found = Set(vectors["invalid"]!.array.map { $0["error"]!.text })
        for scenario in vectors["selections"]!.array { found.formUnion(scenario["refused"]!.array.map { $0["error"]!.text }) }
        // Whether the signer is a member needs the room's state: the node's check, not the bucket's.
        #expect(found == Set(ArchiveError.Code.allCases.filter { $0 != .signerNotMember }.map(\.rawValue)))
    }
}
