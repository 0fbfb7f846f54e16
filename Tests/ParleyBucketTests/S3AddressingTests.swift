import Testing

@testable import ParleyBucket

@Suite struct S3AddressingTests {
    let credentials = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret")

    @Test("AWS buckets are addressed virtual-hosted, custom endpoints path-style unless told otherwise")
    func addressing() throws {
        let aws = try S3Store(configuration: S3Configuration(bucket: "chat-bucket", prefix: "team/", region: "eu-west-1", credentials: credentials))
        #expect(aws.host == "chat-bucket.s3.eu-west-1.amazonaws.com" && aws.scheme == "https")
        let minio = try S3Store(
            configuration: S3Configuration(bucket: "chat-bucket", region: "us-east-1", endpoint: "http://127.0.0.1:9000", credentials: credentials))
        #expect(minio.host == "127.0.0.1:9000" && minio.configuration.pathStyle)
        let virtual = try S3Store(
            configuration: S3Configuration(
                bucket: "chat-bucket", region: "us-east-1", endpoint: "https://s3.example.net", pathStyle: false, credentials: credentials))
        #expect(virtual.host == "chat-bucket.s3.example.net")
        #expect(throws: BucketError.self) {
            try S3Store(configuration: S3Configuration(bucket: "b-b-b", region: "us-east-1", endpoint: "ftp://x", credentials: credentials))
        }
    }

    @Test("A bucket URL takes its credentials from the environment and its options from the query")
    func urlOptions() throws {
        let url = try BucketURL("s3://chat-bucket/team?region=eu-central-1&addressing=virtual")
        let environment = [
            "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token", "AWS_ENDPOINT_URL": "https://s3.example.net",
        ]
        let store = try #require(try url.open(environment: environment) as? S3Store)
        #expect(store.configuration.region == "eu-central-1" && !store.configuration.pathStyle && store.configuration.prefix == "team/")
        #expect(store.configuration.credentials == AWSCredentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token"))
        #expect(store.host == "chat-bucket.s3.example.net")
        do {
            _ = try url.open(environment: [:])
            Issue.record("opened without credentials")
        } catch {
            #expect(error.kind == .badCredentials && error.message.contains("AWS_ACCESS_KEY_ID"))
        }
    }
}
