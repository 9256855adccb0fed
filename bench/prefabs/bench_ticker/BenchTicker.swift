import Foundation
import PrefabKit

enum BenchTicker {
    /// Async: a sleeping stream holds its task, no thread.
    static func ticker(_ inputs: PrefabInputs, _ context: PrefabContext) async throws {
        let n = try inputs.int("n")
        let interval = Duration.milliseconds(try inputs.int("interval_ms"))
        for i in 1...max(n, 1) {
            if i > 1 { try await context.sleep(for: interval) }
            try await context.yield(.progress(current: i, total: n))
        }
        try await context.yield(.done())
    }

    /// The same stream from a synchronous function, which holds a function thread while it sleeps.
    static func tickerSync(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let n = try inputs.int("n")
        let interval = Double(try inputs.int("interval_ms")) / 1000
        for i in 1...max(n, 1) {
            if i > 1 { Thread.sleep(forTimeInterval: interval) }
            try context.yield(.progress(current: i, total: n))
        }
        try context.yield(.done())
    }
}
