import Foundation
import Logging
import NIOCore
import PostgresNIO
import PrefabKit
import ServiceLifecycle
import Synchronization

/// The invocations of every replica of a cluster, in PostgreSQL (`--store postgres://…`): what
/// lets any replica show, follow, answer and cancel a call that another one runs.
///
/// The replica that runs a call writes its row (function, owner key, state, times, replica) and
/// its events, the SSE messages exactly as its own clients get them, appended in batches by one
/// writer task: whatever piles up while a batch is written goes in the next (one statement,
/// which also notifies). Other replicas read rows and learn of new ones by LISTEN/NOTIFY on one
/// channel, whose payloads carry ids only. Each replica renews a lease; the first to see another's
/// lease lapse ends that replica's running calls with `REPLICA_LOST`.
final class SharedStore: Service, Sendable {
    /// A message or a cancel for a call this replica runs, sent by another replica.
    struct Command: Sendable {
        var invocationId: String
        var kind: String
        var body: String?
    }

    /// A call as the store has it.
    struct Row: Sendable {
        var id: String
        var function: String
        var owner: Int?
        var replica: String
        var state: String
        var startedAt: Date
        var finishedAt: Date?
        var durationMs: Double?
        var events: Int
        var lastEvent: Int
        var oldestKept: Int
        var errorCode: String?
        var errorMessage: String?

        var isRunning: Bool { state == Invocation.Phase.running.rawValue }
    }

    private enum Write: Sendable {
        case start(id: String, function: String, owner: Int?, startedAt: Date)
        case event(id: String, sequence: Int, message: [UInt8])
        case end(id: String, state: String, durationMs: Double, events: Int, errorCode: String?, errorMessage: String?)
        case forget(id: String)
    }

    private struct State {
        var pending: [Write] = []
        var pendingBytes = 0
        var dropped = 0
        var subscribers: [String: [UInt64: AsyncStream<Void>.Continuation]] = [:]
        var nextSubscriber: UInt64 = 0
        var ready = false
        var onCommand: (@Sendable (Command) async -> (status: Int, reply: String))?
    }

    /// Events kept per call beyond which the oldest are deleted, as the in-memory log keeps.
    private struct History {
        /// The chunks written, oldest first: the last event of each and its bytes.
        var sizes = CircularBuffer<(last: Int, bytes: Int)>()
        var bytes = 0
        var deletedThrough = 0
    }

    let location: StoreLocation
    /// This process's name in the store: a new one each start.
    let replica: String
    let lease: Duration
    let retention: Duration
    let historyBytes: Int
    private let client: PostgresClient
    private let logger: Logger
    private let state = Mutex(State())
    private let writerWakes: AsyncStream<Void>
    private let wakeWriter: AsyncStream<Void>.Continuation
    static let channel = "prefab_gateway"

    init(location: StoreLocation, lease: Duration, retention: Duration, historyBytes: Int, logger: Logger) {
        self.location = location
        self.replica = "r-" + InvocationID.make()
        self.lease = lease
        self.retention = retention
        self.historyBytes = historyBytes
        self.logger = logger
        self.client = PostgresClient(configuration: location.clientConfiguration, backgroundLogger: logger)
        (writerWakes, wakeWriter) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// True once the schema is there and the lease taken: `/health` says so.
    var isReady: Bool { state.withLock { $0.ready } }

    /// What this replica does with a command for one of its calls; answers an HTTP status and JSON body.
    func onCommand(_ handler: @escaping @Sendable (Command) async -> (status: Int, reply: String)) {
        state.withLock { $0.onCommand = handler }
    }

    // MARK: Writing (the owning replica)

    func started(_ invocation: Invocation) {
        enqueue(
            .start(
                id: invocation.id, function: invocation.function.manifest.name, owner: invocation.owner,
                startedAt: invocation.startedAt))
    }

    /// One SSE message of a call, numbered `sequence`: called by its event log as it appends.
    func appended(_ id: String, sequence: Int, message: [UInt8]) {
        enqueue(.event(id: id, sequence: sequence, message: message))
    }

    func ended(_ invocation: Invocation, terminal: PrefabEvent) {
        let error = terminal.type == PrefabEvent.error
        enqueue(
            .end(
                id: invocation.id, state: invocation.phase.rawValue,
                durationMs: (ContinuousClock.now - invocation.started).seconds * 1000,
                events: invocation.events.count,
                errorCode: error ? terminal.errorCode ?? PrefabError.Code.unexpectedError.rawValue : nil,
                errorMessage: error ? terminal.data?.stringValue ?? "" : nil))
    }

    /// A call that never ran.
    func forget(_ id: String) { enqueue(.forget(id: id)) }

    private func enqueue(_ write: Write) {
        var dropped = 0
        let wasEmpty = state.withLock { state in
            if case .event(_, _, let message) = write {
                // A store far behind (or gone) does not grow memory without bound: events past the
                // limit are dropped, and followers get a gap message for them.
                guard state.pendingBytes + message.count <= Self.maxPendingBytes else {
                    state.dropped += 1
                    return false
                }
                state.pendingBytes += message.count
            }
            dropped = state.dropped
            state.dropped = 0
            state.pending.append(write)
            return state.pending.count == 1
        }
        if dropped > 0 {
            logger.warning("shared store too far behind: events dropped", metadata: ["events": "\(dropped)"])
        }
        if wasEmpty { wakeWriter.yield() }
    }

    /// Bytes of events waiting for the writer beyond which more are dropped.
    private static let maxPendingBytes = 64 << 20

    // MARK: The service

    func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            await cancelWhenGracefulShutdown {
                await self.setUp()
                await withDiscardingTaskGroup { work in
                    work.addTask { await self.writeLoop() }
                    work.addTask { await self.listenLoop() }
                    work.addTask { await self.leaseLoop() }
                }
            }
            // Shutting down: what is written stays written, and the lease lapses at once, so that
            // another replica ends the calls still running here without waiting for the lease time.
            try? await flush()
            _ = try? await client.query("UPDATE prefab_replicas SET lease_until = now() WHERE id = \(replica)")
            group.cancelAll()
        }
    }

    /// Creates the tables (once, whichever replica comes first) and takes the lease; retries until
    /// the database answers.
    private func setUp() async {
        while !Task.isCancelled {
            do {
                try await client.withTransaction(logger: logger) { connection in
                    try await connection.query("SELECT pg_advisory_xact_lock(1717)", logger: logger)
                    for statement in Self.schema {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                }
                try await renewLease()
                state.withLock { $0.ready = true }
                logger.info("shared store ready", metadata: ["store": "\(location)", "replica": "\(replica)"])
                return
            } catch {
                logger.error("shared store unreachable, retrying", metadata: ["error": "\(String(reflecting: error))"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    static let schema = [
        """
        CREATE TABLE IF NOT EXISTS prefab_replicas (
            id text PRIMARY KEY, lease_until timestamptz NOT NULL, started_at timestamptz NOT NULL DEFAULT now())
        """,
        """
        CREATE TABLE IF NOT EXISTS prefab_invocations (
            id text PRIMARY KEY, function text NOT NULL, owner_key bigint, replica text NOT NULL,
            state text NOT NULL, started_at timestamptz NOT NULL, finished_at timestamptz,
            duration_ms double precision, events bigint NOT NULL DEFAULT 0, error_code text, error_message text)
        """,
        "CREATE INDEX IF NOT EXISTS prefab_invocations_running ON prefab_invocations (replica) WHERE state = 'running'",
        "CREATE INDEX IF NOT EXISTS prefab_invocations_finished ON prefab_invocations (finished_at)",
        """
        CREATE TABLE IF NOT EXISTS prefab_event_chunks (
            invocation_id text NOT NULL, first_seq bigint NOT NULL, last_seq bigint NOT NULL, messages text NOT NULL,
            PRIMARY KEY (invocation_id, first_seq))
        """,
        """
        CREATE TABLE IF NOT EXISTS prefab_commands (
            id bigserial PRIMARY KEY, invocation_id text NOT NULL, replica text NOT NULL, kind text NOT NULL,
            body text, status int, reply text, created_at timestamptz NOT NULL DEFAULT now())
        """,
    ]

    /// Writes what is pending, in order, until nothing is; then waits for more.
    private func writeLoop() async {
        for await _ in writerWakes {
            try? await flush()
        }
    }

    private let history = Mutex<[String: History]>([:])

    /// Writes every pending write in order: consecutive events go in one statement.
    /// In three statements whatever the number of calls: the calls that started, then their events,
    /// then the calls that ended (each call's order is kept: its row, its events, its end).
    private func flush() async throws {
        while true {
            let writes = state.withLock { state in
                let writes = state.pending
                state.pending = []
                state.pendingBytes = 0
                return writes
            }
            if writes.isEmpty { return }
            var starts = Starts()
            var ends = Ends()
            var forgotten: [String] = []
            var chunks = Chunks()
            for write in writes {
                switch write {
                case .start(let id, let function, let owner, let startedAt):
                    starts.ids.append(id)
                    starts.functions.append(function)
                    starts.owners.append(owner ?? -1)
                    starts.times.append(startedAt)
                case .event: break
                case .end(let id, let phase, let durationMs, let events, let errorCode, let errorMessage):
                    ends.ids.append(id)
                    ends.states.append(phase)
                    ends.durations.append(durationMs)
                    ends.events.append(events)
                    ends.codes.append(errorCode ?? "")
                    ends.messages.append(errorMessage ?? "")
                case .forget(let id): forgotten.append(id)
                }
            }
            try await insert(starts)
            for write in writes {
                if case .event(let id, let sequence, let message) = write {
                    chunks.add(id, sequence, message)
                    if chunks.bytes >= Self.batchBytes { try await insert(&chunks) }
                }
            }
            try await insert(&chunks)
            try await update(ends)
            if !forgotten.isEmpty {
                try await retrying {
                    try await client.query("DELETE FROM prefab_invocations WHERE id = ANY(\(forgotten)::text[])")
                }
            }
        }
    }

    private struct Starts {
        var ids: [String] = []
        var functions: [String] = []
        var owners: [Int] = []
        var times: [Date] = []
    }

    private struct Ends {
        var ids: [String] = []
        var states: [String] = []
        var durations: [Double] = []
        var events: [Int] = []
        var codes: [String] = []
        var messages: [String] = []
    }

    private func insert(_ starts: Starts) async throws {
        guard !starts.ids.isEmpty else { return }
        try await retrying {
            try await client.query(
                """
                INSERT INTO prefab_invocations (id, function, owner_key, replica, state, started_at)
                SELECT s.id, s.function, NULLIF(s.owner, -1), \(replica), 'running', s.started
                FROM unnest(\(starts.ids)::text[], \(starts.functions)::text[], \(starts.owners)::bigint[],
                    \(starts.times)::timestamptz[]) AS s(id, function, owner, started)
                ON CONFLICT (id) DO NOTHING
                """)
        }
    }

    private func update(_ ends: Ends) async throws {
        guard !ends.ids.isEmpty else { return }
        history.withLock { history in
            for id in ends.ids { history[id] = nil }
        }
        try await retrying {
            try await client.query(
                """
                WITH ended AS (
                    UPDATE prefab_invocations AS i SET state = e.state, finished_at = now(), duration_ms = e.duration,
                        events = e.events, error_code = NULLIF(e.code, ''),
                        error_message = CASE WHEN e.code = '' THEN NULL ELSE e.message END
                    FROM unnest(\(ends.ids)::text[], \(ends.states)::text[], \(ends.durations)::float8[],
                        \(ends.events)::bigint[], \(ends.codes)::text[], \(ends.messages)::text[])
                        AS e(id, state, duration, events, code, message)
                    WHERE i.id = e.id AND i.state = 'running' RETURNING i.id)
                SELECT pg_notify(\(Self.channel), 'e:' || id) FROM ended
                """)
        }
    }

    /// Consecutive events of each call, as rows of `prefab_event_chunks`: a burst is a few rows, not
    /// a row per event (the SSE messages of a chunk are split again at their blank lines).
    private struct Chunks {
        var ids: [String] = []
        var firsts: [Int] = []
        var lasts: [Int] = []
        var messages: [[UInt8]] = []
        /// The open chunk of each call, by its index above.
        var open: [String: Int] = [:]
        var bytes = 0

        mutating func add(_ id: String, _ sequence: Int, _ message: [UInt8]) {
            bytes += message.count
            if let index = open[id], lasts[index] == sequence - 1, messages[index].count < SharedStore.chunkBytes {
                lasts[index] = sequence
                messages[index].append(contentsOf: message)
                return
            }
            open[id] = ids.count
            ids.append(id)
            firsts.append(sequence)
            lasts.append(sequence)
            messages.append(message)
        }
    }

    /// Bytes of events per statement, and per chunk (the unit the history bound deletes).
    private static let batchBytes = 4 << 20
    fileprivate static let chunkBytes = 64 << 10

    private func insert(_ chunks: inout Chunks) async throws {
        guard !chunks.ids.isEmpty else { return }
        defer { chunks = Chunks() }
        let ids = chunks.ids
        let firsts = chunks.firsts
        let lasts = chunks.lasts
        let texts = chunks.messages.map { String(decoding: $0, as: UTF8.self) }
        try await retrying {
            try await client.query(
                """
                WITH added AS (
                    INSERT INTO prefab_event_chunks (invocation_id, first_seq, last_seq, messages)
                    SELECT * FROM unnest(\(ids)::text[], \(firsts)::bigint[], \(lasts)::bigint[], \(texts)::text[])
                    ON CONFLICT DO NOTHING RETURNING invocation_id)
                SELECT pg_notify(\(Self.channel), 'e:' || invocation_id) FROM (SELECT DISTINCT invocation_id FROM added) AS d
                """
            )
        }
        // The same history bound as the in-memory log: the oldest chunks past it are deleted.
        var deletions: [(String, Int)] = []
        history.withLock { history in
            for index in ids.indices {
                var entry = history[ids[index], default: History()]
                entry.sizes.append((lasts[index], texts[index].utf8.count))
                entry.bytes += texts[index].utf8.count
                var through = entry.deletedThrough
                while entry.bytes > historyBytes, let oldest = entry.sizes.first {
                    entry.sizes.removeFirst()
                    entry.bytes -= oldest.bytes
                    through = oldest.last
                }
                if through > entry.deletedThrough {
                    deletions.append((ids[index], through))
                    entry.deletedThrough = through
                }
                history[ids[index]] = entry
            }
        }
        for (id, through) in deletions {
            try await retrying {
                try await client.query(
                    "DELETE FROM prefab_event_chunks WHERE invocation_id = \(id) AND last_seq <= \(through)")
            }
        }
    }

    /// Runs `body`, again after a short wait when the database did not answer (three tries);
    /// past that the write is dropped and logged.
    private func retrying<T>(_ body: () async throws -> T) async throws {
        for attempt in 1...3 {
            do {
                _ = try await body()
                return
            } catch {
                logger.warning(
                    "shared store write failed",
                    metadata: ["attempt": "\(attempt)", "error": "\(String(reflecting: error))"])
                if attempt < 3 { try? await Task.sleep(for: .milliseconds(200 * attempt)) }
            }
        }
    }

    // MARK: Notifications

    /// Listens on the store's channel on one connection of its own, for as long as the service runs.
    private func listenLoop() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        // Whatever came while nobody listened is read again by every follower.
                        self.wakeAll()
                        for try await notification in notifications {
                            self.dispatch(notification.payload)
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("shared store: listening failed, again in 1 s", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func dispatch(_ payload: String) {
        // "c:<replica>:<command id>" for a replica; "e:<invocation>" and "r:<command id>" for followers.
        if payload.hasPrefix("c:") {
            let parts = payload.split(separator: ":")
            guard parts.count == 3, parts[1] == replica, let id = Int(parts[2]) else { return }
            Task { await self.handleCommand(id) }
            return
        }
        let continuations = state.withLock { $0.subscribers[payload].map { Array($0.values) } ?? [] }
        for continuation in continuations { continuation.yield() }
    }

    private func wakeAll() {
        let continuations = state.withLock { $0.subscribers.values.flatMap(\.values) }
        for continuation in continuations { continuation.yield() }
    }

    /// A stream that yields when `key` is notified ("e:<invocation>", "r:<command>"); its
    /// continuation is given too, for the caller's own wake-ups (heartbeats, hang-up).
    func subscribe(_ key: String) -> (AsyncStream<Void>, AsyncStream<Void>.Continuation, UInt64) {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let token = state.withLock { state in
            state.nextSubscriber += 1
            state.subscribers[key, default: [:]][state.nextSubscriber] = continuation
            return state.nextSubscriber
        }
        return (stream, continuation, token)
    }

    func unsubscribe(_ key: String, _ token: UInt64) {
        let continuation = state.withLock { state in
            let continuation = state.subscribers[key]?.removeValue(forKey: token)
            if state.subscribers[key]?.isEmpty == true { state.subscribers[key] = nil }
            return continuation
        }
        continuation?.finish()
    }

    // MARK: Reading (any replica)

    func row(_ id: String) async throws -> Row? {
        let rows = try await client.query(
            """
            SELECT function, owner_key, replica, state, started_at, finished_at, duration_ms, events, error_code,
                error_message,
                (SELECT coalesce(max(last_seq), 0) FROM prefab_event_chunks WHERE invocation_id = \(id)),
                (SELECT coalesce(min(first_seq), 1) FROM prefab_event_chunks WHERE invocation_id = \(id))
            FROM prefab_invocations WHERE id = \(id)
            """)
        for try await (
            function, owner, replica, state, startedAt, finishedAt, durationMs, events, code, message, last, oldest
        )
            in rows.decode(
                (
                    String, Int?, String, String, Date, Date?, Double?, Int, String?, String?, Int, Int
                ).self)
        {
            return Row(
                id: id, function: function, owner: owner, replica: replica, state: state, startedAt: startedAt,
                finishedAt: finishedAt, durationMs: durationMs, events: max(events, last), lastEvent: last,
                oldestKept: oldest, errorCode: code, errorMessage: message)
        }
        return nil
    }

    /// The SSE messages after event `after` (a `gap` message first for those no longer kept),
    /// at most a page; `ended` once the call has ended and nothing is left after them.
    func events(
        of id: String, after: Int, into bytes: inout [UInt8]
    ) async throws -> (last: Int, ended: Bool) {
        let page = 64
        let rows = try await client.query(
            """
            SELECT first_seq, messages FROM prefab_event_chunks WHERE invocation_id = \(id) AND last_seq > \(after)
            ORDER BY first_seq LIMIT \(page)
            """
        )
        var last = after
        var count = 0
        for try await (first, messages) in rows.decode((Int, String).self) {
            count += 1
            var sequence = first
            for message in Self.messages(in: messages) {
                defer { sequence += 1 }
                guard sequence > last else { continue }
                if sequence > last + 1 { EventLog.appendGap(first: last + 1, last: sequence - 1, to: &bytes) }
                bytes.append(contentsOf: message)
                last = sequence
            }
        }
        if count == page { return (last, false) }
        let states = try await client.query("SELECT state, events FROM prefab_invocations WHERE id = \(id)")
        for try await (state, events) in states.decode((String, Int).self) {
            return (last, state != Invocation.Phase.running.rawValue && last >= events)
        }
        return (last, true)
    }

    /// The SSE messages of a chunk, each with its blank line: every message this gateway writes is
    /// `id:` and `data:` lines (one-line JSON) ending in one blank line.
    static func messages(in chunk: String) -> [Substring.UTF8View] {
        var messages: [Substring.UTF8View] = []
        let utf8 = chunk.utf8
        var start = utf8.startIndex
        var index = utf8.startIndex
        var previous: UInt8 = 0
        while index < utf8.endIndex {
            let byte = utf8[index]
            index = utf8.index(after: index)
            if byte == UInt8(ascii: "\n") && previous == UInt8(ascii: "\n") {
                messages.append(chunk[start..<index].utf8)
                start = index
                previous = 0
                continue
            }
            previous = byte
        }
        return messages
    }

    // MARK: Commands (messages and cancels for another replica's call)

    /// Hands a command to the replica that runs `row`'s call and waits for its answer (an HTTP
    /// status and JSON body); nil when that replica did not answer within `timeout`.
    func send(
        _ command: Command, to row: Row, timeout: Duration = .seconds(5)
    ) async throws -> (status: Int, reply: String)? {
        var commandId: Int?
        let rows = try await client.query(
            """
            INSERT INTO prefab_commands (invocation_id, replica, kind, body)
            VALUES (\(command.invocationId), \(row.replica), \(command.kind), \(command.body)) RETURNING id
            """)
        for try await id in rows.decode(Int.self) { commandId = id }
        guard let commandId else { return nil }
        let key = "r:\(commandId)"
        let (wakes, continuation, token) = subscribe(key)
        defer { unsubscribe(key, token) }
        try await client.query("SELECT pg_notify(\(Self.channel), \("c:\(row.replica):\(commandId)"))")
        let timer = GatewayTimer.schedule(after: timeout) { continuation.finish() }
        defer { timer.cancel() }
        var iterator = wakes.makeAsyncIterator()
        repeat {
            let replies = try await client.query(
                "SELECT status, reply FROM prefab_commands WHERE id = \(commandId) AND status IS NOT NULL")
            for try await (status, reply) in replies.decode((Int, String).self) { return (status, reply) }
        } while await iterator.next() != nil
        return nil
    }

    private func handleCommand(_ id: Int) async {
        do {
            var command: Command?
            let rows = try await client.query(
                "SELECT invocation_id, kind, body FROM prefab_commands WHERE id = \(id) AND replica = \(replica)")
            for try await (invocation, kind, body) in rows.decode((String, String, String?).self) {
                command = Command(invocationId: invocation, kind: kind, body: body)
            }
            guard let command, let handler = state.withLock({ $0.onCommand }) else { return }
            let (status, reply) = await handler(command)
            try await client.query(
                """
                WITH answered AS (UPDATE prefab_commands SET status = \(status), reply = \(reply) WHERE id = \(id) RETURNING id)
                SELECT pg_notify(\(Self.channel), 'r:' || id) FROM answered
                """)
        } catch {
            logger.warning("shared store: a command failed", metadata: ["command": "\(id)", "error": "\(error)"])
        }
    }

    // MARK: Leases

    private func renewLease() async throws {
        try await client.query(
            """
            INSERT INTO prefab_replicas (id, lease_until) VALUES (\(replica), now() + make_interval(secs => \(lease.seconds)))
            ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
            """)
    }

    /// Renews this replica's lease every quarter of the lease time (1–2 s), ends the calls of
    /// replicas whose lease lapsed, and forgets calls past their retention.
    private func leaseLoop() async {
        let interval = min(max(lease / 4, .milliseconds(500)), .seconds(2))
        var lastCleanup = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do {
                try await renewLease()
                try await endCallsOfLostReplicas()
                if ContinuousClock.now - lastCleanup >= .seconds(10) {
                    lastCleanup = .now
                    try await forgetExpired()
                }
            } catch {
                logger.warning("shared store: lease renewal failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Marks the running calls of every replica whose lease lapsed `failed`, each with a terminal
    /// `error` event `REPLICA_LOST`, in one transaction (so only one replica does it).
    private func endCallsOfLostReplicas() async throws {
        try await client.withTransaction(logger: logger) { connection in
            let message = "the replica running this call stopped renewing its lease for \(lease.seconds) s"
            let lost = try await connection.query(
                """
                UPDATE prefab_invocations AS i SET state = 'failed', finished_at = now(),
                    duration_ms = extract(epoch FROM now() - i.started_at) * 1000,
                    error_code = \(PrefabError.Code.replicaLost.rawValue), error_message = \(message)
                FROM prefab_replicas AS r
                WHERE i.replica = r.id AND i.state = 'running' AND r.lease_until < now() AND r.id <> \(replica)
                RETURNING i.id
                """, logger: logger)
            var ids: [String] = []
            for try await id in lost.decode(String.self) { ids.append(id) }
            for id in ids {
                var last = 0
                let rows = try await connection.query(
                    "SELECT coalesce(max(last_seq), 0) FROM prefab_event_chunks WHERE invocation_id = \(id)",
                    logger: logger)
                for try await sequence in rows.decode(Int.self) { last = sequence }
                var event = PrefabEvent.error(PrefabError(.replicaLost, message))
                if last == 0 { event["invocation_id"] = .string(id) }
                var bytes: [UInt8] = []
                SSEEncoder.appendEvent(event, id: last + 1, to: &bytes)
                let text = String(decoding: bytes, as: UTF8.self)
                try await connection.query(
                    """
                    INSERT INTO prefab_event_chunks (invocation_id, first_seq, last_seq, messages)
                    VALUES (\(id), \(last + 1), \(last + 1), \(text))
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
                try await connection.query(
                    "UPDATE prefab_invocations SET events = \(last + 1) WHERE id = \(id)", logger: logger)
                try await connection.query("SELECT pg_notify(\(Self.channel), \("e:" + id))", logger: logger)
                logger.notice("ended a lost replica's call", metadata: ["invocation": "\(id)"])
            }
        }
    }

    private func forgetExpired() async throws {
        let seconds = retention.seconds
        try await client.query(
            """
            DELETE FROM prefab_event_chunks WHERE invocation_id IN (
                SELECT id FROM prefab_invocations WHERE finished_at < now() - make_interval(secs => \(seconds)))
            """)
        try await client.query(
            "DELETE FROM prefab_invocations WHERE finished_at < now() - make_interval(secs => \(seconds))")
        try await client.query("DELETE FROM prefab_commands WHERE created_at < now() - interval '5 minutes'")
        try await client.query(
            """
            DELETE FROM prefab_replicas AS r WHERE r.lease_until < now() - interval '1 hour'
            AND NOT EXISTS (SELECT 1 FROM prefab_invocations AS i WHERE i.replica = r.id AND i.state = 'running')
            """)
    }
}

extension PrefabError.Code {
    /// The replica that ran the call stopped renewing its lease (it crashed, hung, or lost the store).
    public static let replicaLost: Self = "REPLICA_LOST"
}
