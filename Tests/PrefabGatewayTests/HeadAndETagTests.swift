import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// HEAD wherever GET works (the GET's status and headers, no body), and `/manifest`'s `ETag`
/// with 304 for a client that polls it.
@Suite(.timeLimit(.minutes(1))) struct HeadAndETagTests {
    static let writer = TestPrefab.streaming("writer") { _, context in
        try Data("a,b\n1,2\n".utf8).write(to: try context.outputDirectory.appendingPathComponent("t.csv"))
        try context.yield(.start())
    }

    @Test func headAnswersLikeGetWithoutABody() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let call = try await gateway.invoke("writer")
            let id = try #require(call.headers[.init("X-Invocation-Id")!])
            for path in [
                "/", "/playground/playground.js", "/manifest", "/health", "/metrics", "/openapi.json",
                "/files/\(id)/t.csv", "/invocations/\(id)",
            ] {
                let get = try await gateway.request(.get, path)
                let head = try await gateway.request(.head, path)
                #expect(get.status == .ok, "GET \(path)")
                #expect(head.status == .ok, "HEAD \(path)")
                #expect(head.body.readableBytes == 0, "HEAD \(path)")
                #expect(head.headers[.contentType] == get.headers[.contentType], "HEAD \(path)")
                // /metrics and /health change between two requests; the others' lengths match.
                if !["/metrics", "/health", "/invocations/\(id)"].contains(path) {
                    #expect(head.headers[.contentLength] == String(get.body.readableBytes), "HEAD \(path)")
                }
            }
            #expect(try await gateway.request(.head, "/files/\(id)/nope.csv").status == .notFound)
            #expect(try await gateway.request(.head, "/nowhere").status == .notFound)
            // A POST-only route still says which method to use.
            let invoke = try await gateway.request(.head, "/invoke/writer")
            #expect(invoke.status == .methodNotAllowed)
            #expect(invoke.headers[.allow] == "POST")
            let put = try await gateway.request(.put, "/manifest")
            #expect(put.headers[.allow] == "GET, HEAD")
        }
    }

    static let waiter = TestPrefab.streaming("waiter") { _, context in
        try context.yield(.start())
        _ = try context.nextMessage(timeout: .seconds(10))
    }

    @Test func headOnAnEventStreamAttachesNoReader() async throws {
        try await LiveGateway.run([Self.waiter]) { gateway in
            var stream = try await gateway.openStream("waiter")
            #expect(try await stream.nextEvent()?.type == "start")
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            let head = try await gateway.request(.head, "/invocations/\(id)/events")
            #expect(head.status == .ok)
            #expect(head.headers[.contentType] == "text/event-stream; charset=utf-8")
            #expect(head.body.readableBytes == 0)
            // Only the call's own stream reads it, and the connection stays usable: a HEAD that ran
            // the GET attached a reader (until the response was dropped) and closed the connection,
            // as a GET that streams must.
            #expect(try await gateway.request(.get, "/invocations/\(id)").json?["readers"] == 1)
            #expect(head.headers[.connection] == nil)
            let bad = try await gateway.request(.head, "/invocations/\(id)/events?after=x")
            #expect(bad.status == .badRequest)
            let unknown = String(repeating: "0", count: 32)
            #expect(try await gateway.request(.head, "/invocations/\(unknown)/events").status == .notFound)
            _ = try await gateway.request(.post, "/invocations/\(id)/messages", body: #"{"type": "go"}"#)
            #expect(try await stream.rest().last?.prefabEvent?.type == "done")
            let after = try await gateway.request(.head, "/invocations/\(id)/events?after=99")
            #expect(after.status == .noContent)
        }
    }

    @Test func theManifestHasAnETagAndAnswers304ToAMatchingIfNoneMatch() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let first = try await gateway.request(.get, "/manifest")
            let tag = try #require(first.headers[.eTag])
            #expect(tag.hasPrefix("\"") && tag.hasSuffix("\"") && tag.count == 18, "\(tag)")
            #expect(try await gateway.request(.get, "/manifest").headers[.eTag] == tag)
            for condition in [tag, "W/\(tag)", "\"other\", \(tag)", "*"] {
                let again = try await gateway.request(.get, "/manifest", headers: [.ifNoneMatch: condition])
                #expect(again.status == .notModified, "\(condition)")
                #expect(again.body.readableBytes == 0)
                #expect(again.headers[.eTag] == tag)
            }
            let changed = try await gateway.request(.get, "/manifest", headers: [.ifNoneMatch: "\"0000000000000000\""])
            #expect(changed.status == .ok)
            #expect(changed.json?["functions"]?.arrayValue?.count == 1)
            // Other functions, another tag: the old one no longer matches.
            try await LiveGateway.run([StreamingTests.count]) { other in
                let reply = try await other.request(.get, "/manifest", headers: [.ifNoneMatch: tag])
                #expect(reply.status == .ok)
                #expect(reply.headers[.eTag] != tag)
            }
        }
    }
}
