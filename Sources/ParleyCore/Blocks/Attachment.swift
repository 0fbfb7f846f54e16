/// A file a message shares (docs/PROTOCOL.md §16.4): the reference that fetches and opens its blocks, and what a
/// reader is told about it before fetching: name, media type, size, SHA-256 and, for images, dimensions.
///
/// Everything here comes from the sender, who may be hostile: the name is checked to be one harmless path component
/// (no separators, no control or direction-changing characters, at most 255 bytes), the rest against their grammars.
public struct FileAttachment: Sendable, Equatable {
    public var reference: FileReference
    public var name: String
    public var mediaType: String
    /// The SHA-256 of the file's bytes, which a reader checks once it has them all.
    public var sha256: [UInt8]
    public var width: Int?
    public var height: Int?

    public var size: Int64 { reference.layout.size }

    /// The longest name, in UTF-8 bytes (what most file systems take as one component).
    public static let maxNameBytes = 255
    /// The longest media type, in bytes (RFC 6838 allows 127 on each side of the slash).
    public static let maxMediaTypeBytes = 255
    /// The largest image side, in pixels.
    public static let maxDimension = 1 << 20
    /// The media type of a file whose type is not known.
    public static let unknownMediaType = "application/octet-stream"

    public init(reference: FileReference, name: String, mediaType: String, sha256: [UInt8], width: Int? = nil, height: Int? = nil) {
        self.reference = reference
        self.name = name
        self.mediaType = mediaType
        self.sha256 = sha256
        self.width = width
        self.height = height
    }

    /// The `file` object of an `m.room.message` of msgtype `file`.
    public var jsonObject: JSONObject {
        var object = JSONObject()
        object["name"] = .string(name)
        object["media_type"] = .string(mediaType)
        object["size"] = .integer(size)
        object["sha256"] = .string(Hex.encode(sha256))
        object["root"] = .string(reference.root.hex)
        object["root_tier"] = .integer(Int64(reference.rootTier.rawValue))
        object["key"] = .string(Base64.encode(reference.key.bytes))
        if reference.layout.whitened { object["whitened"] = .bool(true) }
        if let width, let height {
            object["width"] = .integer(Int64(width))
            object["height"] = .integer(Int64(height))
        }
        return object
    }

    /// Parses and checks the `file` object of a message.
    /// - Throws: ``ContentError`` naming the field and rule.
    public static func parse(_ value: JSONValue) throws(ContentError) -> FileAttachment {
        let type = "m.room.message: file"
        guard case .object(let object) = value else { throw ContentError("\(type) must be an object, found \(value.kindName)") }
        var reader = ContentReader(content: object, type: type)
        let name = try reader.string("name", maxBytes: Int.max)
        if let problem = problem(withName: name) { throw ContentError("\(type): name \(problem)") }
        let mediaType = try reader.string("media_type", maxBytes: maxMediaTypeBytes)
        guard isMediaType(mediaType) else { throw ContentError("\(type): media_type \"\(Identifier.printable(mediaType))\" is not TYPE/SUBTYPE") }
        let size = try reader.integer("size")
        let sha256Text = try reader.string("sha256")
        guard let sha256 = BlockID(hex: sha256Text)?.bytes else { throw ContentError("\(type): sha256 must be 64 lowercase hex digits") }
        guard let root = BlockID(hex: try reader.string("root")) else { throw ContentError("\(type): root must be 64 lowercase hex digits") }
        let tierValue = try reader.integer("root_tier")
        guard let tierByte = UInt8(exactly: tierValue), let tier = BlockTier(rawValue: tierByte) else {
            throw ContentError("\(type): root_tier \(tierValue) is no tier (10, 16, 20 or 24)")
        }
        guard let keyBytes = Base64.decode(try reader.string("key")), let key = try? FileKey(bytes: keyBytes) else {
            throw ContentError("\(type): key must be 32 bytes in standard base64")
        }
        // Written only when true: one form for each file.
        let whitened = reader.optionalValue("whitened")
        guard whitened == nil || whitened == .bool(true) else { throw ContentError("\(type): whitened is true or absent") }
        let reference: FileReference
        do {
            reference = try FileReference(root: root, rootTier: tier, key: key, size: size, whitened: whitened != nil)
        } catch { throw ContentError("\(type): \(error.message)") }
        let width = try reader.optionalInteger("width")
        let height = try reader.optionalInteger("height")
        guard (width == nil) == (height == nil) else { throw ContentError("\(type): width and height come together") }
        for side in [width, height].compactMap({ $0 }) where side < 1 || side > Int64(maxDimension) {
            throw ContentError("\(type): an image side is 1 to \(maxDimension) pixels, not \(side)")
        }
        try reader.rejectUnread()
        return FileAttachment(
            reference: reference, name: name, mediaType: mediaType, sha256: sha256, width: width.map { Int($0) }, height: height.map { Int($0) })
    }

    /// Why `name` cannot name a shared file, or `nil` when it can: it must be one path component a file can be saved
    /// under as it is, and show as itself on a terminal.
    public static func problem(withName name: String) -> String? {
        guard !name.isEmpty else { return "is empty" }
        guard name.utf8.count <= maxNameBytes else { return "is \(name.utf8.count) bytes; at most \(maxNameBytes)" }
        guard name != ".", name != ".." else { return "is \"\(name)\", which names a folder" }
        for scalar in name.unicodeScalars where isForbidden(scalar) {
            return "holds U+\(String(scalar.value, radix: 16, uppercase: true)), which a file name may not"
        }
        return nil
    }

    /// `name` made acceptable (``problem(withName:)``): forbidden characters become `_`, and a name too long keeps
    /// its extension and loses the end of its stem. What a sender does with the name of a file it is given.
    public static func safeName(_ name: String) -> String {
        var scalars = String.UnicodeScalarView(name.unicodeScalars.map { isForbidden($0) ? "_" : $0 })
        if scalars.isEmpty || String(scalars) == "." || String(scalars) == ".." { return "file" }
        guard String(scalars).utf8.count > maxNameBytes else { return String(scalars) }
        let text = String(scalars)
        let dot = text.lastIndex(of: ".").map { text[$0...] }.flatMap { $0.utf8.count <= 32 ? String($0) : nil } ?? ""
        scalars = String.UnicodeScalarView()
        for scalar in text.dropLast(dot.count).unicodeScalars {
            guard String(scalars).utf8.count + String(scalar).utf8.count + dot.utf8.count <= maxNameBytes else { break }
            scalars.append(scalar)
        }
        return String(scalars) + dot
    }

    /// Path separators, controls (C0, DEL, C1), line and paragraph separators, and the characters that reorder text
    /// (bidirectional embeddings, overrides and isolates), which could make `exe.txt` show as `txt.exe`.
    static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x2F, 0x5C, 0...0x1F, 0x7F...0x9F, 0x2028, 0x2029, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0xFEFF: true
        default: false
        }
    }

    /// `type/subtype` of RFC 6838 restricted-name characters, optionally followed by parameters.
    static func isMediaType(_ text: String) -> Bool {
        let essence = text.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false)[0]
        let parts = essence.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part.utf8.count <= 127
                && part.utf8.allSatisfy { byte in
                    switch byte {
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
                    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "-"), UInt8(ascii: "^"),
                        UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "+"):
                        true
                    default: false
                    }
                }
        } && text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }
}
