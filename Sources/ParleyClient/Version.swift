/// This implementation's release and the protocol version it speaks (docs/PROTOCOL.md §1.3).
public enum ParleyVersion {
    public static let release = "0.1.0"
    /// The version of docs/PROTOCOL.md: the `version` of every room's `m.room.create`, and `v1` in signing prefixes.
    public static let protocolVersion = 1
    /// `parley 0.1.0 (protocol version 1)`.
    public static var description: String { "parley \(release) (protocol version \(protocolVersion))" }
}
