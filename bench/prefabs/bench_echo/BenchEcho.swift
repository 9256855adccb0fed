import PrefabKit

enum BenchEcho {
    /// Runs on the event loop of the connection that asked (`runs_on_event_loop` in the manifest).
    static func echo(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        try context.yield(.start())
        try context.yield(.content(try inputs.string("text")))
        try context.yield(.done())
    }

    /// The same, handed to a function thread (or a task, once proven short) and back.
    static func echoThreads(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        try echo(inputs, context)
    }
}
