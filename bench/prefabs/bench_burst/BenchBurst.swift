import PrefabKit

enum BenchBurst {
    static func burst(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let n = try inputs.int("n")
        try context.yield(.start())
        for _ in 0..<n {
            try context.yield(.content("x"))
        }
        try context.yield(.done())
    }
}
