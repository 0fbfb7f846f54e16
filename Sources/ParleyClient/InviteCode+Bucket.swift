import ParleyBucket
import ParleyCore

extension InviteCode {
    /// Reads an invite code a person gave this node (docs/PROTOCOL.md §13.5), with an error that says what to do.
    /// - Throws: ``ClientError`` `.invalidArgument`.
    public init(pasted text: String) throws(ClientError) {
        do {
            try self.init(parsing: text)
        } catch  where error.code == .unsupportedVersion {
            throw ClientError(.invalidArgument, error.message, remedy: "Update Parley, or ask for a code made by the version you have.")
        } catch {
            throw ClientError(
                .invalidArgument, "This is not a valid Parley invite code: \(error.message)",
                remedy: "Ask for the code again, and pass it whole; it starts with \(InviteCode.prefix)")
        }
    }

    /// The bucket this node reaches the room through: the first of the code's locations that is a bucket whose URL
    /// this version can use (docs/PROTOCOL.md §13.5.2).
    /// - Throws: ``ClientError`` `.noUsableLocation` listing what the code offers instead.
    public func bucket() throws(ClientError) -> BucketURL {
        try RoomLocation.firstUsableBucket(
            in: locations, of: "The invite code for room \(roomID)",
            remedy: "Ask a member for an invite code that lists the room's bucket, or, if you can reach the bucket, give it with --bucket URL.")
    }
}

extension LinkedRoom {
    /// The bucket the new device reaches the room through, chosen as for an invite code.
    /// - Throws: ``ClientError`` `.noUsableLocation` listing what the link code offers instead.
    func bucket() throws(ClientError) -> BucketURL {
        try RoomLocation.firstUsableBucket(
            in: locations, of: "The link code's room \(roomID)",
            remedy:
                "Ask a member of \(roomID) for its invite code and join with `parley room join CODE`, giving the room's bucket with --bucket URL if the code lists none you can use."
        )
    }
}

extension RoomLocation {
    /// The URL of the first bucket location that ``BucketURL`` accepts; later locations are not looked at.
    /// - Parameters:
    ///   - subject: what lists the locations, to start the error with.
    ///   - remedy: what to do when none can be used.
    static func firstUsableBucket(in locations: [RoomLocation], of subject: String, remedy: String) throws(ClientError) -> BucketURL {
        var unusable: [String] = []
        for location in locations {
            switch location {
            case .bucket(let url):
                do { return try BucketURL(url) } catch { unusable.append("a bucket it cannot use, \(shown(url)): \(error.message)") }
            case .relay(let url): unusable.append("a relay, \(shown(url))")
            case .peer(let address): unusable.append("a peer, \(shown(address))")
            case .unknown(let kind, _): unusable.append("a location of a kind it does not know (\(kind))")
            }
        }
        throw ClientError(
            .noUsableLocation, "\(subject) lists no location this version of Parley can use:", details: unusable,
            remedy: "This version of Parley reaches rooms through buckets only. " + remedy)
    }

    private static func shown(_ text: String) -> String { TerminalText.shortened(text, limit: 120) }
}
