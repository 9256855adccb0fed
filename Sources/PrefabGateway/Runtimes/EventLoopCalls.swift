import PrefabKit
import Synchronization

/// Which calls run on the event loop of the connection that asked: those of synchronous Swift
/// functions whose manifest says `"runs_on_event_loop": true`, until one of them runs too long.
///
/// Handing a call to a thread and back costs two thread wake-ups, which were half of `echo`'s
/// time at 64 connections. A call run on the loop costs none, but while it runs the loop serves
/// none of its other connections. So the manifest has to say so (the gateway cannot tell a
/// function that is always quick from one that was quick so far), such a call cannot wait
/// (`waitRefusal`), and a function one of whose calls runs past `overrunLimit` runs on function
/// threads from then on, for the rest of the process's life.
final class EventLoopCalls: Sendable {
    /// By default 10 ms: longer than a quick function takes (`echo`: a few microseconds), short
    /// enough that other connections of the loop notice a stall of this length only in their
    /// slowest answers. The host stealing the CPU mid-call can push a quick call past it: that
    /// costs the function its place on the loop, never a call.
    let overrunLimit: Duration

    /// Whether a function's calls still run on the loop, and what they get instead of waiting
    /// (made once: its message cost each call nearly 1% of `echo`'s time).
    private final class Place: Sendable {
        let kept = Atomic<Bool>(true)
        let refusal: PrefabError
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

    /// Records how long a call run on the loop took; true the first time one ran past
    /// `overrunLimit`, which sends its function to function threads from now on.
    func ran(_ function: String, for duration: Duration) -> Bool {
        guard duration > overrunLimit, let place = places[function] else { return false }
        return place.kept.exchange(false, ordering: .relaxed)
    }

    private static func waitRefusal(_ function: String) -> PrefabError {
        PrefabError(
            .cannotWaitOnEventLoop,
            "'\(function)' runs on the event loop (\"runs_on_event_loop\": true in its manifest), where it cannot"
                + " wait: not to ask, sleep or read a message, nor for its client once it has yielded a stream"
                + " buffer's worth; remove the flag to run it on a function thread")
    }
}
