import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import NIOPosix
import PrefabKit

/// Serves the common call, `POST /invoke/<name>` answered as SSE, from the connection's
/// pipeline, below Hummingbird's router: the request is read, checked and started on the event
/// loop, and the answer written from there, a stream's events as they come (`pump`).
/// Hummingbird's path cost a call a task with the frames of its router, middleware and handler,
/// kept for the connection's life, and several hops between threads.
///
/// Anything else — another route, a browser's request (`Origin`: CORS), a JSON or NDJSON answer,
/// a request that fails a check, a call that must queue — goes to Hummingbird as it came, and
/// Hummingbird answers it, errors included, as before. Once one request of a connection took that
/// way, all later ones do: only one of the two writes to a connection at a time.
///
/// It sits just before Hummingbird's handler, after `HTTPConnectionStateHandler`, which sees its
/// requests and answers too: the idle timeout and a graceful shutdown treat them like any other.
final class InvokeFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// Waiting for a request.
        case idle
        /// Reading the body of a call it may serve.
        case reading(FastCall)
        /// The call runs; its answer is being written.
        case answering(FastAnswer)
        /// Hummingbird serves this connection from now on.
        case passingThrough
        case closed
    }

    private let gateway: Gateway
    private var state = State.idle
    /// Holds back Hummingbird's handling of the connection until a request goes to it.
    private var gate: ConnectionGate?
    /// Parts that came while an answer was being written (pipelined requests).
    private var pending: [HTTPRequestPart] = []
    private var pendingBytes = 0
    /// A `read` held back while too many pending bytes wait.
    private var readHeld = false
    /// The client closed its side (`ChannelEvent.inputClosed`): no request follows what came.
    private var inputEnded = false
    /// The `Host` of this connection's last call served here, which passed the host check: a
    /// client sends the same one on every request, and checking it again cost a call about 3%.
    private var allowedAuthority: String?
    /// The end of the present call's quick-answer window, while it waits for it.
    private var quickAnswerDeadline: NIOScheduledCallback?
    /// Past this, pending requests stop the connection's reads until the answer ends.
    private static let maxPendingBytes = 64 * 1024

    init(gateway: Gateway) {
        self.gateway = gateway
    }

    func handlerAdded(context: ChannelHandlerContext) {
        gate = try? context.pipeline.syncOperations.handler(type: ConnectionGate.self)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .passingThrough:
            context.fireChannelRead(data)
        case .answering:
            hold(part)
        case .closed:
            break
        case .idle, .reading:
            if pending.isEmpty { handle(part, context: context) } else { hold(part) }
        }
    }

    private func hold(_ part: HTTPRequestPart) {
        pending.append(part)
        if case .body(let buffer) = part { pendingBytes += buffer.readableBytes }
    }

    /// A switch over `(state, part)` copied both into a tuple and destroyed it: about 2.5% of a
    /// short call's instructions (callgrind, `echo_py`).
    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch state {
        case .idle:
            guard case .head(let head) = part,
                let call = gateway.fastCall(for: head, allowedAuthority: allowedAuthority)
            else {
                passThrough([part], context: context)
                return
            }
            allowedAuthority = head.authority
            state = .reading(call)
        case .reading(var call):
            switch part {
            case .body(let buffer):
                guard call.body.readableBytes + buffer.readableBytes <= gateway.configuration.maxBodyBytes else {
                    // Hummingbird answers 413.
                    passThrough(call.parts + [part], context: context)
                    return
                }
                // Not held twice while it grows, which would copy the body.
                state = .idle
                call.body.writeImmutableBuffer(buffer)
                state = .reading(call)
            case .end:
                start(call, context: context)
            case .head:
                passThrough([part], context: context)
            }
        default:
            passThrough([part], context: context)
        }
    }

    /// Starts the call, or hands the request to Hummingbird when it cannot start here.
    private func start(_ call: FastCall, context: ChannelHandlerContext) {
        guard let started = gateway.startFastCall(call, on: context.eventLoop) else {
            passThrough(call.parts + [.end(nil)], context: context)
            return
        }
        state = .answering(started)
        // A call that ended as it started (a function on the event loop) may be answered now: its
        // bytes go out before the rest of this read's handling (`channelReadComplete`, the loop's
        // tasks: about 15,000 instructions, a tenth of an `echo` call). One a tick (`LoopTick`),
        // so pipelined requests drained by an answer wait for their turn instead of nesting.
        if started.invocation.events.finalCount != nil, LoopTick.answersAtOnce(on: context.eventLoop) {
            answer(context: context)
            return
        }
        let handler = loopBound(context)
        let waiting = started.invocation.events.whenFinished {
            handler.eventLoop.execute {
                let (fastPath, context) = handler.value
                fastPath.quickAnswerDeadline?.cancel()
                fastPath.quickAnswerDeadline = nil
                fastPath.answer(context: context)
            }
        }
        guard waiting else { return }
        // The window's end is a deadline of this event loop, which reaches it without a wake-up
        // of another thread: a timer thread and a dispatch queue then the loop cost a call that
        // outlived the window three wake-ups (`echo_py` at 64 connections), and the timer thread
        // one per call when calls come one at a time.
        let window = TimeAmount.nanoseconds(Int64(gateway.configuration.quickAnswerWindow.clampedNanoseconds))
        do {
            quickAnswerDeadline = try context.eventLoop.assumeIsolated().scheduleCallback(
                in: window, handler: QuickAnswerWindowEnd(handler: handler))
        } catch {
            // The loop is shutting down: the stream begins now.
            if started.invocation.events.stopWaitingForFinish() { answer(context: context) }
        }
    }

    /// The quick-answer window is over before the call ended: its stream begins.
    fileprivate func quickAnswerWindowEnded(context: ChannelHandlerContext) {
        quickAnswerDeadline = nil
        guard case .answering(let answer) = state, answer.invocation.events.stopWaitingForFinish() else { return }
        self.answer(context: context)
    }

    /// From now on Hummingbird serves the connection: `parts` and what is pending go to it.
    private func passThrough(_ parts: [HTTPRequestPart], context: ChannelHandlerContext) {
        state = .passingThrough
        gate?.open()
        let all = parts + pending
        pending = []
        pendingBytes = 0
        for part in all { context.fireChannelRead(wrapInboundOut(part)) }
        // Hummingbird's handler passes on what it read at the end of a read: this may be later.
        context.fireChannelReadComplete()
        if inputEnded { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
        releaseRead(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let event = event as? ChannelEvent, event == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // The client closed its side: no request follows. Hummingbird's handler, when it runs,
        // closes the connection once it has answered; otherwise it is closed here.
        inputEnded = true
        switch state {
        case .answering(let answer):
            // A hang-up, as `HangUpHandler` tells other answers, once the answer streams (an answer
            // whole within the quick-answer window is written); pipelined requests are still answered.
            if answer.watch != nil { answer.release() }
        case .passingThrough, .closed:
            context.fireUserInboundEventTriggered(event)
        case .reading(let call):
            // A body cut short: Hummingbird answers 400.
            passThrough(call.parts, context: context)
        case .idle:
            state = .closed
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch state {
        case .idle:
            // Hummingbird's handler answers a request that could not be parsed with 400.
            passThrough([], context: context)
            context.fireErrorCaught(error)
        case .reading(let call):
            // A body framed badly: Hummingbird answers 400.
            passThrough(call.parts, context: context)
            context.fireErrorCaught(error)
        case .answering(let answer):
            // A pipelined request that could not be parsed: no answer can follow this one.
            answer.closesConnection = true
        default:
            context.fireErrorCaught(error)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The connection closed.
        if case .answering(let answer) = state { answer.release() }
        state = .closed
        quickAnswerDeadline?.cancel()
        quickAnswerDeadline = nil
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if case .answering = state, pendingBytes > Self.maxPendingBytes {
            readHeld = true
            return
        }
        context.read()
    }

    private func releaseRead(context: ChannelHandlerContext) {
        guard readHeld else { return }
        readHeld = false
        context.read()
    }

    // MARK: The answer

    /// The quick-answer window is over (or the call ended): the whole answer, or the start of
    /// its stream.
    private func answer(context: ChannelHandlerContext) {
        guard case .answering(let answer) = state else { return }
        // Appended, not set: none is among `eventStreamHeaders`, and a set by name searches the
        // fields first.
        var headers = Gateway.eventStreamHeaders
        // The copy, with room for the fields added below: grown one by one, it was allocated twice.
        headers.reserveCapacity(headers.count + 5)
        headers.append(HTTPField(name: .invocationId, value: answer.invocation.id))
        headers.append(HTTPField(name: .date, value: HTTPDate.now))
        headers.append(HTTPField(name: .server, value: Gateway.serverName))
        var first: [UInt8] = []
        if answer.reader.takeAvailable(into: &first) {
            headers.append(HTTPField(name: .contentLength, value: String(first.count)))
            context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(ByteBuffer(bytes: first))), promise: nil)
            let end = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            // Once the answer is on its way: it has taken every event.
            answer.release()
            answered(end: end, context: context)
            return
        }
        if answer.closesConnection { headers[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .ok, headerFields: headers))), promise: nil)
        let handler = loopBound(context)
        answer.streamBegan(
            watch: gateway.stuckClientWatch(answer.invocation) {
                handler.eventLoop.execute { handler.value.1.close(promise: nil) }
            })
        if inputEnded { answer.release() }
        if first.isEmpty {
            context.flush()
            pump(context: context)
        } else {
            send(first, answer, context: context)
        }
    }

    private func loopBound(_ context: ChannelHandlerContext) -> NIOLoopBound<(InvokeFastPath, ChannelHandlerContext)> {
        NIOLoopBound((self, context), eventLoop: context.eventLoop)
    }

    /// Writes what the call has produced since the last write, or waits on the event loop until
    /// it produces more (no task, no thread): a stream whose events come one by one (a ticker)
    /// costs a callback between them. A stream whose next events are already there when a write
    /// completes (a burst) is written by a task from then on (`Gateway.streamRest`): going on
    /// from here would keep the event loop from every other connection's I/O until it ends.
    private func pump(context: ChannelHandlerContext, afterWrite: Bool = false) {
        guard case .answering(let answer) = state, !answer.streamedByTask else { return }
        var bytes: [UInt8] = []
        switch answer.reader.poll(into: &bytes) {
        case nil:
            let handler = loopBound(context)
            answer.reader.whenReady {
                handler.eventLoop.execute {
                    let (fastPath, context) = handler.value
                    fastPath.pump(context: context)
                }
            }
        case .events? where afterWrite:
            answer.streamedByTask = true
            gateway.streamRest(of: answer, first: bytes, to: FastStreamSink(handler: loopBound(context)))
        case .events?:
            send(bytes, answer, context: context)
        case .idle?:
            send(SSEEncoder.heartbeat, answer, context: context)
        case .finished?:
            endStream(context: context)
        }
    }

    private func send(_ bytes: [UInt8], _ answer: FastAnswer, context: ChannelHandlerContext) {
        answer.watch?.writeBegan()
        write(bytes, context: context).assumeIsolated().whenComplete { result in
            answer.watch?.writeEnded()
            // A failed write: the connection closed, and `handlerRemoved` has let the call go.
            if case .success = result { self.pump(context: context, afterWrite: true) }
        }
    }

    /// Writes a part of the stream; its future completes once the socket took it.
    fileprivate func write(_ bytes: [UInt8], context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        guard case .answering = state else { return context.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        return context.writeAndFlush(wrapOutboundOut(.body(ByteBuffer(bytes: bytes))))
    }

    /// The stream is over: its end, then the next request.
    fileprivate func endStream(context: ChannelHandlerContext) {
        guard case .answering(let answer) = state else { return }
        answer.release()
        answered(end: context.writeAndFlush(wrapOutboundOut(.end(nil))), context: context)
    }

    /// The answer's last part is on its way (`end`): the next request, or the connection's close
    /// once that part is out (a close fails writes still waiting for the socket).
    private func answered(end: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        guard case .answering(let answer) = state else { return }
        if answer.closesConnection {
            state = .closed
            end.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            return
        }
        state = .idle
        releaseRead(context: context)
        // Pipelined requests, until one is answered or goes to Hummingbird.
        while !pending.isEmpty, isIdleOrReading {
            let part = pending.removeFirst()
            if case .body(let buffer) = part { pendingBytes -= buffer.readableBytes }
            handle(part, context: context)
        }
        guard inputEnded else { return }
        switch state {
        case .idle:
            state = .closed
            end.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .reading(let call):
            passThrough(call.parts, context: context)
        default:
            break
        }
    }

    private var isIdleOrReading: Bool {
        switch state {
        case .idle, .reading: true
        default: false
        }
    }
}

/// Whether a call was answered at once in the present tick of an event loop (one pass over its
/// ready connections, then its tasks). Only the first quick call of a tick is: a lone client's
/// first event goes out at once, while a loop that serves many connections writes their answers
/// after it has read all of their requests, as tasks at the tick's end. Answering each at once
/// woke the load client for each answer: `echo` at 64 connections fell from about 25,000 to
/// 20,000 requests/s.
private final class LoopTick: @unchecked Sendable {
    /// Only touched on its loop's thread.
    private var answeredAtOnce = false

    private static let current = ThreadSpecificVariable<LoopTick>()

    /// True for the first call of `loop`'s present tick that asks; on `loop`'s thread.
    static func answersAtOnce(on loop: any EventLoop) -> Bool {
        let tick: LoopTick
        if let existing = current.currentValue {
            tick = existing
        } else {
            tick = LoopTick()
            current.currentValue = tick
        }
        guard !tick.answeredAtOnce else { return false }
        tick.answeredAtOnce = true
        loop.execute { tick.answeredAtOnce = false }
        return true
    }
}

/// Ends a call's quick-answer window on its connection's event loop.
private struct QuickAnswerWindowEnd: NIOScheduledCallbackHandler, Sendable {
    let handler: NIOLoopBound<(InvokeFastPath, ChannelHandlerContext)>

    func handleScheduledCallback(eventLoop: some EventLoop) {
        let (fastPath, context) = handler.value
        fastPath.quickAnswerWindowEnded(context: context)
    }
}

/// Hands a stream's writes to its `InvokeFastPath`, on its event loop.
struct FastStreamSink: Sendable {
    fileprivate let handler: NIOLoopBound<(InvokeFastPath, ChannelHandlerContext)>

    /// Writes `bytes`; returns once the socket took them (a client that reads nothing makes
    /// this wait). Throws once the connection is closed.
    func write(_ bytes: [UInt8]) async throws {
        try await handler.eventLoop.flatSubmit { [handler] in
            let (fastPath, context) = handler.value
            return fastPath.write(bytes, context: context)
        }.get()
    }

    func end() {
        handler.eventLoop.execute { [handler] in
            let (fastPath, context) = handler.value
            fastPath.endStream(context: context)
        }
    }
}

/// Adds `InvokeFastPath` to a connection once Hummingbird's handlers are in place, just before
/// the last of them: it is one of the channel handlers Hummingbird adds (`additionalChannelHandlers`),
/// which come before `HTTPConnectionStateHandler`.
final class InvokeFastPathInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    private let gateway: Gateway

    init(gateway: Gateway) {
        self.gateway = gateway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let pipeline = context.pipeline.syncOperations
        if let state = try? pipeline.handler(type: HTTPConnectionStateHandler.self) {
            try? pipeline.addHandler(InvokeFastPath(gateway: gateway), position: .after(state))
        }
        context.fireChannelRead(data)
        pipeline.removeHandler(self, promise: nil)
    }
}
