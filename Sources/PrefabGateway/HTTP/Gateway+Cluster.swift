import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PrefabKit

/// The `/invocations/<id>` routes for a call another replica runs (with `--store`): its state and
/// events read from the shared store, its messages and cancels handed to its replica.
extension Gateway {
    /// The stored row of the call `context` names when this replica does not have it in memory;
    /// nil without a store or when the call is local. Another key's call is not found.
    func storedRow(_ context: GatewayRequestContext) async throws -> SharedStore.Row? {
        guard let store else { return nil }
        let id = context.parameters.get("id") ?? ""
        guard InvocationID.isValid(id), invocations.invocation(id) == nil else { return nil }
        let row: SharedStore.Row?
        do {
            row = try await store.row(id)
        } catch {
            throw GatewayError(
                .serviceUnavailable, .storeUnavailable, "the shared store did not answer: \(error)",
                headers: [.retryAfter: "1"])
        }
        guard let row else { return nil }
        guard row.owner == context.apiKey else { return nil }
        return row
    }

    /// Hands `command` to the replica running `row`'s call and answers what it answered.
    func forward(_ command: SharedStore.Command, to row: SharedStore.Row) async throws -> Response {
        guard row.isRunning else {
            throw GatewayError(
                .conflict, .invocationFinished, "the invocation has already ended: it is \(row.state)")
        }
        guard let store, let (status, reply) = try await store.send(command, to: row) else {
            throw GatewayError(
                .gatewayTimeout, .replicaUnreachable,
                "the replica running this invocation did not answer; if it is gone, the call ends with REPLICA_LOST")
        }
        return Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: reply))
        )
    }

    /// What this replica does with a command another replica sent for one of its calls.
    func apply(_ command: SharedStore.Command) async -> (status: Int, reply: String) {
        if command.kind == "unfollow" {
            remoteFollowers.unfollow(command.body ?? "")
            return (200, "{}")
        }
        do {
            guard let invocation = invocations.invocation(command.invocationId) else {
                throw GatewayError(.notFound, .invocationNotFound, "no invocation '\(command.invocationId)'")
            }
            try requireRunning(invocation)
            switch command.kind {
            case "cancel":
                invocation.context.cancel(PrefabError(.cancelled, "the invocation was cancelled by a client"))
                let reply: JSONValue = ["id": .string(invocation.id), "state": "cancelling"]
                return (202, reply.jsonString)
            case "message":
                guard let json = try? JSONValue(parsing: command.body ?? ""), let message = PrefabEvent(json: json)
                else {
                    throw GatewayError(
                        .badRequest, .invalidMessage, "a message is one event object with a string \"type\"")
                }
                try deliver(message, to: invocation)
                let reply: JSONValue = ["id": .string(invocation.id), "delivered": true]
                return (202, reply.jsonString)
            case "follow":
                let token = remoteFollowers.follow(invocation, grace: configuration.resumeGrace)
                let reply: JSONValue = ["follower": .string(token)]
                return (200, reply.jsonString)
            default:
                throw GatewayError(.badRequest, .invalidRequest, "unknown command '\(command.kind)'")
            }
        } catch let error as GatewayError {
            return (Int(error.status.code), error.jsonValue.jsonString)
        } catch {
            return (500, GatewayError(.internalServerError, .unexpectedError, "\(error)").jsonValue.jsonString)
        }
    }

    /// `GET /invocations/<id>/events` for another replica's call: the stored events after `after`,
    /// then each batch as the store announces it (LISTEN/NOTIFY), until the call's end.
    func storedEvents(
        _ row: SharedStore.Row, after: Int, request: Request, context: GatewayRequestContext
    ) -> Response {
        guard let store, row.isRunning || after < row.events else {
            var response = Response(status: .noContent)
            response.headers[.invocationId] = row.id
            return response
        }
        var headers = Self.eventStreamHeaders
        headers[.connection] = "close"
        headers[.invocationId] = row.id
        let heartbeat = configuration.heartbeatInterval
        let requestBody = request.body
        let channel = context.channel
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { writer in
                let key = "e:" + row.id
                let (wakes, wake, token) = store.subscribe(key)
                defer { store.unsubscribe(key, token) }
                // Wakes the loop every heartbeat interval: a quiet stream gets a comment line.
                let ticker = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: heartbeat)
                        wake.yield()
                    }
                }
                defer { ticker.cancel() }
                // The owner counts this client as a reader while it follows.
                let follower = row.isRunning ? await self.follow(row) : nil
                defer {
                    if let follower {
                        Task {
                            _ = try? await store.send(
                                SharedStore.Command(invocationId: row.id, kind: "unfollow", body: follower), to: row)
                        }
                    }
                }
                try await Self.watchingHangUp(channel, requestBody, onHangUp: { wake.finish() }) {
                    var after = after
                    var lastWrite = ContinuousClock.now
                    var iterator = wakes.makeAsyncIterator()
                    var bytes: [UInt8] = []
                    while true {
                        bytes.removeAll(keepingCapacity: true)
                        let (last, ended) = try await store.events(of: row.id, after: after, into: &bytes)
                        if !bytes.isEmpty {
                            try await writer.write(ByteBuffer(bytes: bytes))
                            lastWrite = .now
                        }
                        let more = last > after && !ended
                        after = last
                        if ended { return }
                        if more { continue }
                        if ContinuousClock.now - lastWrite >= heartbeat * 0.9 {
                            try await writer.write(ByteBuffer(bytes: SSEEncoder.heartbeat))
                            lastWrite = .now
                        }
                        guard await iterator.next() != nil else { return }
                    }
                }
                try await writer.finish(nil)
            }
        )
    }

    /// Tells the replica running `row`'s call that a client follows it from here; the token that
    /// ends it, or nil when that replica did not answer.
    private func follow(_ row: SharedStore.Row) async -> String? {
        guard let store,
            let (status, reply) = try? await store.send(
                SharedStore.Command(invocationId: row.id, kind: "follow"), to: row, timeout: .seconds(2)),
            status == 200
        else { return nil }
        return (try? JSONValue(parsing: reply))?["follower"]?.stringValue
    }

    /// The API key that made `invocationId`'s output files, from the shared store when this
    /// replica did not run the call; nil when keys are off or nobody knows it.
    func outputOwner(of invocationId: String) async -> Int? {
        if let owner = outputOwners.owner(of: invocationId) { return owner }
        guard let store, !configuration.apiKeys.isEmpty, InvocationID.isValid(invocationId) else { return nil }
        return (try? await store.row(invocationId))?.owner
    }
}

extension SharedStore.Row {
    /// `GET /invocations/<id>` for a call another replica runs, as `Invocation.statusJSON` has it.
    var statusJSON: JSONValue {
        let milliseconds = durationMs ?? Date().timeIntervalSince(startedAt) * 1000
        var status: [String: JSONValue] = [
            "id": .string(id),
            "function": .string(function),
            "state": .string(state),
            "started_at": .string(startedAt.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))),
            "finished_at": finishedAt.map {
                .string($0.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            } ?? .null,
            "duration_ms": .double((milliseconds * 10).rounded() / 10),
            "events": .int(events),
            "oldest_kept_event": .int(oldestKept),
            "readers": 0,
            "replica": .string(replica),
        ]
        if let errorCode {
            status["error"] = ["code": .string(errorCode), "message": .string(errorMessage ?? "")]
        }
        return .object(status)
    }
}

extension PrefabError.Code {
    public static let storeUnavailable: Self = "STORE_UNAVAILABLE"
    public static let replicaUnreachable: Self = "REPLICA_UNREACHABLE"
}
