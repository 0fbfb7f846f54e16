import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import ParleyClient

extension LocalAPI {
    /// Sharing and fetching files (docs/API.md, Files): the body of an upload is the file's bytes, streamed to a file of
    /// the home's and sealed from there; a download is the file, fetched and checked by the node, streamed back.
    func addFileRoutes(to v1: RouterGroup<BasicWebSocketRequestContext>) {
        v1.post("rooms/:room/files") { request, context in
            let roomID = try context.parameters.require("room")
            let query = request.uri.queryParameters
            guard let name = query.get("name"), !name.isEmpty else {
                throw APIError(ClientError(.invalidArgument, "The upload needs ?name=, the file's name.", remedy: "Add ?name=FILE_NAME (URL-encoded)."))
            }
            let caption = query.get("caption").flatMap { $0.isEmpty ? nil : $0 }
            let replyTo = query.get("reply_to")
            let spool = try self.spoolFile(in: "uploads")
            defer { unlink(spool.path) }
            try await self.receive(request.body, into: spool)
            return try await call(status: .created) {
                let parent = try replyTo.map { try self.node.resolveEventID($0, in: roomID) }
                return Self.eventJSON(try self.node.shareFile(roomID, path: spool.path, name: name, caption: caption, replyTo: parent))
            }
        }
        v1.get("rooms/:room/events/:event/file") { _, context in
            let (roomID, reference) = (try context.parameters.require("room"), try context.parameters.require("event"))
            let file = try await offPool { try self.node.fileAttachment(eventID: try self.node.resolveEventID(reference, in: roomID)) }
            let spool = try self.spoolFile(in: "downloads")
            // The node names its file only when it is whole and checked; the spool's own name was a placeholder.
            unlink(spool.path)
            close(spool.descriptor)
            do {
                let source = try self.client.blockSource(roomID)
                try await self.node.download(file, from: source, to: spool.path)
            } catch {
                throw APIError(ClientError(describing: error))
            }
            return try Self.fileResponse(file, at: spool.path)
        }
    }

    /// A new file of the home's folder `folder` (made 0700), open for writing, mode 0600.
    func spoolFile(in folder: String) throws -> (path: String, descriptor: Int32) {
        let directory = node.home.url.appendingPathComponent(folder).path
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
            throw APIError(ClientError(.io, "Cannot create \(directory): \(String(cString: strerror(errno))).", remedy: "Check that the home is writable."))
        }
        let path = "\(directory)/.spool-\(UInt64.random(in: 0...UInt64.max))"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw APIError(ClientError(.io, "Cannot create \(path): \(String(cString: strerror(errno))).")) }
        return (path, descriptor)
    }

    /// Writes a request body to the spool as it comes, refusing one beyond ``Node/maxFileBytes``.
    func receive(_ body: RequestBody, into spool: (path: String, descriptor: Int32)) async throws {
        defer { close(spool.descriptor) }
        var received: Int64 = 0
        for try await buffer in body {
            received += Int64(buffer.readableBytes)
            guard received <= Node.maxFileBytes else {
                throw APIError(
                    ClientError(
                        .tooLarge, "The upload is larger than \(Node.maxFileBytes >> 30) GiB, the most a shared file may be.",
                        remedy: "Split it first and share the parts."))
            }
            try buffer.withUnsafeReadableBytes { bytes in
                var done = 0
                while done < bytes.count {
                    let count = write(spool.descriptor, bytes.baseAddress! + done, bytes.count - done)
                    if count < 0, errno == EINTR { continue }
                    guard count > 0 else {
                        let full = errno == ENOSPC || errno == EDQUOT
                        throw APIError(
                            ClientError(
                                .io,
                                full
                                    ? "The disk holding the home is full: the upload was not kept."
                                    : "Cannot write the upload: \(String(cString: strerror(errno)))."))
                    }
                    done += count
                }
            }
        }
    }

    /// Media types a browser may show in the page: still images it decodes itself, none that can run script (SVG can).
    static let inlineMediaTypes: Set<String> = ["image/png", "image/jpeg", "image/gif", "image/webp"]

    /// The downloaded file at `path` as the response body, read 1 MiB at a time and removed once sent (or dropped).
    /// Only a still image is shown inline; anything else, whatever type the sender claims, is an attachment the browser
    /// saves, never a page of this origin: a shared HTML file must not run with the node's token.
    static func fileResponse(_ file: FileAttachment, at path: String) throws -> Response {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        unlink(path)
        guard descriptor >= 0 else { throw APIError(ClientError(.io, "Cannot read the downloaded file: \(String(cString: strerror(errno))).")) }
        let inline = inlineMediaTypes.contains(file.mediaType)
        var headers = HTTPFields()
        headers[.contentType] = inline ? file.mediaType : "application/octet-stream"
        headers[.contentDisposition] = "\(inline ? "inline" : "attachment"); filename*=UTF-8''\(percentEncoded(file.name))"
        headers[.contentSecurityPolicy] = "default-src 'none'; sandbox"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[.cacheControl] = "private, max-age=3600"
        let size = file.size
        let body = ResponseBody(contentLength: Int(size)) { writer in
            defer { close(descriptor) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            var sent: Int64 = 0
            while sent < size {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw APIError(ClientError(.io, "The downloaded file ended early.")) }
                try await writer.write(ByteBuffer(bytes: buffer[..<count]))
                sent += Int64(count)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// RFC 8187 encoding of a file name for `filename*`: every byte but unreserved ASCII as %XX.
    static func percentEncoded(_ name: String) -> String {
        var result = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.append(Character(Unicode.Scalar(byte)))
            default:
                result += String(format: "%%%02X", byte)
            }
        }
        return result
    }
}
