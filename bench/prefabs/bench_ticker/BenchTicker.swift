import Foundation
import PrefabKit

enum BenchTicker {
    static func ticker(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let n = try inputs.int("n")
        let interval = Double(try inputs.int("interval_ms")) / 1000
        for i in 1...max(n, 1) {
            if i > 1 { Thread.sleep(forTimeInterval: interval) }
            try context.yield(.progress(current: i, total: n))
        }
        try context.yield(.done())
    }
}
