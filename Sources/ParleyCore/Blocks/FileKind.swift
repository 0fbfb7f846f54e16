/// What a file is, from its first bytes and its name: the media type a message declares, and an image's dimensions.
/// Reads only what it is given (the file's first ``headerBytes``), so a hostile file costs no more than that.
public enum FileKind {
    /// How much of a file's start is enough to recognise it and find an image's size.
    public static let headerBytes = 64 * 1024

    /// The media type of a file starting with `header` and named `name`: by its magic bytes for the formats a chat
    /// shows inline, else by its extension, else `application/octet-stream`.
    public static func mediaType(header: [UInt8], name: String) -> String {
        if header.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "image/png" }
        if header.starts(with: [0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if header.starts(with: Array("GIF87a".utf8)) || header.starts(with: Array("GIF89a".utf8)) { return "image/gif" }
        if header.count >= 12, header.starts(with: Array("RIFF".utf8)), Array(header[8..<12]) == Array("WEBP".utf8) { return "image/webp" }
        if header.starts(with: Array("%PDF-".utf8)) { return "application/pdf" }
        let dot = name.lastIndex(of: ".").map { name[name.index(after: $0)...].lowercased() } ?? ""
        return byExtension[dot] ?? FileAttachment.unknownMediaType
    }

    static let byExtension: [String: String] = [
        "txt": "text/plain", "md": "text/markdown", "csv": "text/csv", "html": "text/html", "json": "application/json",
        "pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "zip": "application/zip", "gz": "application/gzip", "tar": "application/x-tar", "mp3": "audio/mpeg", "ogg": "audio/ogg",
        "wav": "audio/wav", "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "svg": "image/svg+xml",
    ]

    /// Width and height of a PNG, GIF, JPEG or WebP image starting with `header`, or `nil` when it is none of them,
    /// its size is not within the header, or a side is 0 or beyond ``FileAttachment/maxDimension``.
    public static func imageDimensions(header: [UInt8]) -> (width: Int, height: Int)? {
        let found: (Int, Int)?
        switch mediaType(header: header, name: "") {
        case "image/png": found = header.count >= 24 ? (be(header, 16, 4), be(header, 20, 4)) : nil
        case "image/gif": found = header.count >= 10 ? (le(header, 6, 2), le(header, 8, 2)) : nil
        case "image/jpeg": found = jpegDimensions(header)
        case "image/webp": found = webpDimensions(header)
        default: found = nil
        }
        guard let (width, height) = found, (1...FileAttachment.maxDimension).contains(width), (1...FileAttachment.maxDimension).contains(height)
        else { return nil }
        return (width, height)
    }

    /// The size in the first start-of-frame segment (SOF0–SOF15 but DHT, JPG and DAC), skipping the segments before it.
    static func jpegDimensions(_ bytes: [UInt8]) -> (Int, Int)? {
        var index = 2
        while index + 9 < bytes.count {
            guard bytes[index] == 0xFF else { return nil }
            let marker = bytes[index + 1]
            if marker == 0xFF {
                index += 1
                continue
            }
            let length = be(bytes, index + 2, 2)
            if (0xC0...0xCF).contains(marker), ![0xC4, 0xC8, 0xCC].contains(marker) {
                return (be(bytes, index + 7, 2), be(bytes, index + 5, 2))
            }
            guard length >= 2 else { return nil }
            index += 2 + length
        }
        return nil
    }

    static func webpDimensions(_ bytes: [UInt8]) -> (Int, Int)? {
        guard bytes.count >= 30 else { return nil }
        switch String(decoding: bytes[12..<16], as: UTF8.self) {
        case "VP8 ": return (le(bytes, 26, 2) & 0x3FFF, le(bytes, 28, 2) & 0x3FFF)
        case "VP8L":
            let bits = le(bytes, 21, 4)
            return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        case "VP8X": return (le(bytes, 24, 3) + 1, le(bytes, 27, 3) + 1)
        default: return nil
        }
    }

    static func be(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int { bytes[start..<start + count].reduce(0) { $0 << 8 | Int($1) } }
    static func le(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int { bytes[start..<start + count].reversed().reduce(0) { $0 << 8 | Int($1) } }
}
