import Foundation
import ParleyCore

/// Loads the protocol test vectors in docs/vectors/, found relative to this source file.
public enum Vectors {
    public static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/vectors")

    /// The parsed vector file `name` (for example `"events.json"`).
    public static func load(_ name: String) throws -> JSONValue {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONParser(maxDepth: 64, maxBytes: 1 << 24).parse(Array(data))
    }

    public static func hex(_ text: String) -> [UInt8] {
        guard let bytes = Hex.decode(text.lowercased()) else { preconditionFailure("bad hex in a vector: \(text)") }
        return bytes
    }
}

extension JSONValue {
    /// Member access for test code: `vector["cases"]`.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }
    public var array: [JSONValue] { arrayValue ?? [] }
    public var text: String { stringValue ?? "" }
}
