import Foundation
import ParleyClient
import ParleyTesting
import Testing

/// Files through the local API: an upload's bytes shared as a file message, and the file served back so that no
/// shared file can run as a page of the node's origin.
@Suite struct FileAPITests {
    /// A PNG header of a 640×480 image, then `count` bytes of pattern.
    static func png(_ count: Int) -> [UInt8] {
        [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8) + [0, 0, 2, 128, 0, 0, 1, 224]
            + (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 11) }
    }

    @Test func `an uploaded file is shared as a file message and served back byte for byte, an image inline and anything else as an attachment`() async throws {
        let fixture = try await APIFixture()
        let page = Array("<html><script>alert(document.cookie)</script></html>".utf8) + (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
        let uploaded = try await fixture.request(.POST, "/v1/rooms/general/files?name=evil%20page.html&caption=have%20a%20look", body: page)
        #expect(uploaded.status == 201, "\(String(decoding: uploaded.body, as: UTF8.self))")
        let eventID = try #require(uploaded.json?["event_id"]?.stringValue)
        let image = try await fixture.request(.POST, "/v1/rooms/general/files?name=photo.png", body: Self.png(5_000))
        #expect(image.status == 201)
        let imageID = try #require(image.json?["event_id"]?.stringValue)

        let items = try #require(try await fixture.request(.GET, "/v1/rooms/general/timeline").json?["items"]?.arrayValue)
        let shared = try #require(items.first { $0["event_id"]?.stringValue == eventID })
        #expect(shared["msgtype"]?.stringValue == "file" && shared["body"]?.stringValue == "have a look")
        #expect(shared["file"]?["name"]?.stringValue == "evil page.html" && shared["file"]?["size"]?.integerValue == Int64(page.count))
        #expect(shared["file"]?["media_type"]?.stringValue == "text/html")
        let photo = try #require(items.first { $0["event_id"]?.stringValue == imageID })
        #expect(photo["file"]?["width"]?.integerValue == 640 && photo["file"]?["height"]?.integerValue == 480)

        let served = try await fixture.request(.GET, "/v1/rooms/general/events/\(eventID)/file")
        #expect(served.status == 200 && served.body == page)
        // HTML from a sender is never a page here: a download, sandboxed, its type not sniffed.
        #expect(served.headers.first(name: "Content-Type") == "application/octet-stream")
        #expect(served.headers.first(name: "Content-Disposition") == "attachment; filename*=UTF-8''evil%20page.html")
        #expect(served.headers.first(name: "Content-Security-Policy") == "default-src 'none'; sandbox")
        #expect(served.headers.first(name: "X-Content-Type-Options") == "nosniff")
        let shown = try await fixture.request(.GET, "/v1/rooms/general/events/\(imageID)/file")
        #expect(shown.status == 200 && shown.body == Self.png(5_000))
        #expect(shown.headers.first(name: "Content-Type") == "image/png")
        #expect(shown.headers.first(name: "Content-Disposition")?.hasPrefix("inline;") == true)
        // Nothing of the uploads or downloads is left in the home.
        for folder in ["uploads", "downloads"] {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: fixture.node.home.url.appendingPathComponent(folder).path)) ?? []
            #expect(left.isEmpty, "\(folder): \(left)")
        }
    }

    @Test func `an upload without a name, a file asked of a text message or of no event, and a file unknown here get their error codes`() async throws {
        let fixture = try await APIFixture()
        let unnamed = try await fixture.request(.POST, "/v1/rooms/general/files", body: [1, 2, 3])
        #expect(unnamed.status == 400 && unnamed.errorCode == "invalid_argument")
        let nowhere = try await fixture.request(.POST, "/v1/rooms/nowhere/files?name=a.txt", body: [1, 2, 3])
        #expect(nowhere.status == 404 && nowhere.errorCode == "unknown_room")
        let text = try await fixture.post("/v1/rooms/general/messages", ["text": "no file here"])
        let textID = try #require(text.json?["event_id"]?.stringValue)
        let notAFile = try await fixture.request(.GET, "/v1/rooms/general/events/\(textID)/file")
        #expect(notAFile.status == 400 && notAFile.errorCode == "invalid_argument")
        let unknown = try await fixture.request(.GET, "/v1/rooms/general/events/general::20260101T000000.000Z::00000000-0000-4000-8000-000000000000/file")
        #expect(unknown.status == 404 && unknown.errorCode == "unknown_event")
        // A file whose blocks this node no longer holds, in a room with no bucket to fetch them from.
        let uploaded = try await fixture.request(.POST, "/v1/rooms/general/files?name=gone.bin", body: Array(repeating: 9, count: 3_000))
        let eventID = try #require(uploaded.json?["event_id"]?.stringValue)
        try FileManager.default.removeItem(atPath: fixture.node.blocks.path)
        let gone = try await fixture.request(.GET, "/v1/rooms/general/events/\(eventID)/file")
        #expect(gone.status == 502 && gone.errorCode == "incomplete")
    }
}
