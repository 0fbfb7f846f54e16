import ParleyCore
import ParleyTesting
import Testing

/// docs/vectors/blocks.json, written by the independent generator (docs/PROTOCOL.md §16).
@Suite struct BlockVectorTests {
    let vectors = try! Vectors.load("blocks.json")
    var key: FileKey { try! FileKey(bytes: Vectors.hex(vectors["file_key"]!.text)) }

    @Test func `nonces spell a block's depth and index`() {
        for case let vector in vectors["nonces"]!.array {
            let place = BlockPlace(depth: UInt8(vector["depth"]!.integerValue!), index: UInt64(vector["index"]!.integerValue!))
            #expect(place.nonce == Vectors.hex(vector["nonce"]!.text))
        }
    }

    @Test func `files are laid out in the generator's tiers, depths and block counts`() throws {
        for vector in vectors["layouts"]!.array {
            let layout = try FileLayout(size: vector["size"]!.integerValue!)
            #expect(layout.dataTier.rawValue == UInt8(vector["data_tier"]!.integerValue!), "\(vector)")
            #expect(layout.depth == UInt8(vector["depth"]!.integerValue!), "\(vector)")
            #expect(layout.dataBlockCount == vector["data_blocks"]!.integerValue!, "\(vector)")
        }
    }

    @Test func `whitened files are laid out in the generator's tiers, depths and block counts`() throws {
        for vector in vectors["whitened_layouts"]!.array {
            let layout = try FileLayout(size: vector["size"]!.integerValue!, whitened: true)
            #expect(layout.dataTier.rawValue == UInt8(vector["data_tier"]!.integerValue!), "\(vector)")
            #expect(layout.depth == UInt8(vector["depth"]!.integerValue!), "\(vector)")
            #expect(layout.dataBlockCount == vector["data_blocks"]!.integerValue!, "\(vector)")
        }
    }

    @Test func `the generator's whitened file opens: its stored block XOR its random block is the sealed block`() throws {
        let vector = vectors["whitened_file"]!
        let root = Vectors.hex(vector["root_hex"]!.text)
        #expect(BlockID.of(root).hex == vector["root"]!.text)
        let tier = BlockTier(rawValue: UInt8(vector["root_tier"]!.integerValue!))!
        let reference = try FileReference(root: BlockID.of(root), rootTier: tier, key: key, size: vector["size"]!.integerValue!, whitened: true)
        let reader = FileReader(reference)
        let listed = try reader.manifest(root, fetched: reader.root)
        let manifest = try FileManifest(plaintext: Vectors.hex(vector["manifest_plaintext_hex"]!.text))
        #expect(manifest.plaintext == Vectors.hex(vector["manifest_plaintext_hex"]!.text))
        let (stored, random) = (Vectors.hex(vector["stored_hex"]!.text), Vectors.hex(vector["randomizer_hex"]!.text))
        #expect(listed.count == 1 && listed[0].id == BlockID.of(stored) && listed[0].randomizer == BlockID.of(random))
        #expect(Array(try reader.data(stored, randomizer: random, fetched: listed[0])) == Vectors.hex(vector["file_hex"]!.text))
    }

    @Test func `single-block files seal to the generator's blocks and read back`() throws {
        for vector in vectors["files"]!.array {
            let file = Vectors.hex(vector["file_hex"]!.text)
            var sealer = try FileSealer(size: Int64(file.count), key: key)
            #expect(try sealer.append(file).isEmpty)
            let (blocks, reference) = try sealer.finish()
            #expect(blocks.count == 1 && reference.root.hex == vector["root"]!.text)
            #expect(reference.rootTier.rawValue == UInt8(vector["root_tier"]!.integerValue!))
            if let stored = vector["stored_hex"]?.stringValue { #expect(blocks[0].bytes == Vectors.hex(stored)) }
            let reader = FileReader(reference)
            #expect(Array(try reader.data(blocks[0].bytes, fetched: reader.root)) == file)
        }
    }

    @Test func `a file of 256 blocks makes the generator's data blocks and root manifest`() throws {
        let vector = vectors["manifest"]!
        let size = Int(vector["size"]!.integerValue!)
        var sealer = try FileSealer(size: Int64(size), key: key)
        let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
        var made: [SealedBlock] = []
        var left = size
        while left > 0 {
            made += try sealer.append(chunk.prefix(left))
            left -= min(left, chunk.count)
        }
        let (last, reference) = try sealer.finish()
        made += last
        #expect(made.dropLast().map(\.id.hex) == vector["data_block_ids"]!.array.map(\.text))
        #expect(reference.root.hex == vector["root"]!.text && reference.rootTier.rawValue == UInt8(vector["root_tier"]!.integerValue!))
        let manifest = try FileManifest(plaintext: Vectors.hex(vector["plaintext_hex"]!.text))
        #expect(manifest.plaintext == Vectors.hex(vector["plaintext_hex"]!.text))
        #expect(manifest.entries.map(\.hex) == vector["data_block_ids"]!.array.map(\.text))
        let reader = FileReader(reference)
        #expect(try reader.manifest(made.last!.bytes, fetched: reader.root).map(\.id) == manifest.entries)
    }

    @Test func `file messages are accepted or refused as the generator says`() throws {
        for vector in vectors["file_messages"]!.array {
            guard case .object(let content) = vector["content"]! else { throw BlockError(.badReference, "not an object") }
            let accepted = (try? EventContent.parse(type: EventType.message, content: content, roomID: "room")) != nil
            #expect(accepted == (vector["valid"] == .bool(true)), "\(CanonicalJSON.string(.object(content)).prefix(200))")
        }
    }
}
