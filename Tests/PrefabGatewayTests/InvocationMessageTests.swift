import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// `POST /invocations/<id>/messages` to a Swift function in the gateway's process.
@Suite(.timeLimit(.minutes(1))) struct InvocationMessageTests {
    /// A function that reads no messages gets at most 256 waiting: the next one is refused with
    /// 429 `TOO_MANY_MESSAGES` and `Retry-After`, and the queue is not grown.
    @Test func messagesToAFunctionThatReadsNoneAreBoundedWith429() async throws {
        let deaf = TestPrefab.streaming("deaf") { _, context in
            try context.yield(.start())
            try context.sleep(for: .seconds(3600))
        }
        try await LiveGateway.run([deaf], configure: { $0.resumeGrace = .seconds(10) }) { gateway in
            var stream = try await gateway.openStream("deaf")
            let id = try #require(stream.response.headers.first(name: "X-Invocation-Id"))
            #expect(try await stream.nextEvent()?.type == "start")
            for index in 0..<256 {
                let delivered = try await gateway.request(
                    .post, "/invocations/\(id)/messages", body: #"{"type": "note", "data": \#(index)}"#)
                #expect(delivered.status == .accepted, "message \(index)")
            }
            let refused = try await gateway.request(
                .post, "/invocations/\(id)/messages", body: #"{"type": "note", "data": "one too many"}"#)
            #expect(refused.status == .tooManyRequests)
            #expect(refused.errorCode == "TOO_MANY_MESSAGES")
            #expect(refused.headers[.retryAfter] == "1")
            let cancelled = try await gateway.request(.delete, "/invocations/\(id)")
            #expect(cancelled.status == .accepted)
            #expect(try await stream.rest().last?.prefabEvent?.errorCode == "CANCELLED")
        }
    }
}
