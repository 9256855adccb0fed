import PrefabKit

enum BenchEcho {
    static func echo(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        try context.yield(.start())
        try context.yield(.content(try inputs.string("text")))
        try context.yield(.done())
    }
}
