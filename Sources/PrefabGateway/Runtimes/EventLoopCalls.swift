import PrefabKit
import Synchronization

/// Which calls run on the event loop of the connection that asked: those of synchronous Swift
/// functions whose manifest says `"runs_on_event_loop": true`, until their calls run too long.
///
/// Handing a call to a thread and back costs two thread wake-ups, which were half of `echo`'s
/// time at 64 connections. A call run on the loop costs none, but while it runs the loop serves
/// none of its other connections. So the manifest has to say so (the gateway cannot tell a
/// function that is always quick from one that was quick so far), such a call cannot wait
/// (`waitRefusal`), and a function `overrunsToLeave` of whose calls within `overrunWindow` ran
/// past `overrunLimit` runs on function threads from then on, for the rest of the process's life.
final class EventLoopCalls: Sendable {
    /// By default 10 ms: longer than a quick function takes (`echo`: a few microseconds), short
    /// enough that other connections of the loop notice a stall of this length only in their
    /// slowest answers.
    let overrunLimit: Duration

    /// Three within a minute: the host stealing the CPU, or a busy machine preempting the loop,
    /// pushes a quick call past the limit now and then (on this project's 2 cores with a load
    /// client beside the gateway, one of four short benchmark runs then served `echo` at function
    /// threads' speed), and one such call sent the function off for good: a process that lives for
    /// weeks would lose every such function's place sooner or later. A function that is slow
    /// itself overruns on call after call and leaves on its third.
    static let overrunsToLeave = 3
    static let overrunWindow: Duration = .seconds(60)

    /// Whether a function's calls still run on the loop, what they get instead of waiting (made
    /// once: its message cost each call nearly 1% of `echo`'s time), and when its latest calls
    /// overran.
    private final class Place: Sendable {
        let kept = Atomic<Bool>(true)
        let refusal: PrefabError
        let overruns = Mutex<[ContinuousClock.Instant]>([])
        init(refusal: PrefabError) { self.refusal = refusal }
    }

    private let places: [String: Place]

    init(functions: some Sequence<FunctionManifest>, overrunLimit: Duration) {
        self.overrunLimit = overrunLimit
        var places: [String: Place] = [:]
        for function in functions where function.runsOnEventLoop {
            places[function.name] = Place(refusal: Self.waitRefusal(function.name))
        }
        self.places = places
    }

    /// What a call of `function` gets instead of waiting when it runs on the event loop that
    /// serves its request; nil when it does not run there.
    func refusal(for function: String) -> PrefabError? {
        guard let place = places[function], place.kept.load(ordering: .relaxed) else { return nil }
        return place.refusal
    }

    /// Records how long a call run on the loop took; true once a call ran past `overrunLimit` for
    /// the `overrunsToLeave`-th time within `overrunWindow`, which sends its function to function
    /// threads from now on.
    func ran(_ function: String, for duration: Duration, at now: ContinuousClock.Instant = .now) -> Bool {
        guard duration > overrunLimit, let place = places[function] else { return false }
        let leaves = place.overruns.withLock { overruns in
            overruns.removeAll { now - $0 > Self.overrunWindow }
            overruns.append(now)
            return overruns.count >= Self.overrunsToLeave
        }
        return leaves && place.kept.exchange(false, ordering: .relaxed)
    }

    private static func waitRefusal(_ function: String) -> PrefabError {
        PrefabError(
            .cannotWaitOnEventLoop,
            "'\(function)' runs on the event loop (\"runs_on_event_loop\": true in its manifest), where it cannot"
                + " wait: not to ask, sleep or read a message, nor for its client once it has yielded a stream"
                + " buffer's worth; remove the flag to run it on a function thread")
    }
}
