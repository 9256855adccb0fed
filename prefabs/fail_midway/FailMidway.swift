import PrefabKit

enum FailMidway {
    static func failMidway(_ inputs: PrefabInputs, _ context: PrefabContext) throws {
        let steps = try inputs.int("steps")
        let failAt = try inputs.int("fail_at")
        let delay = try inputs.int("delay_ms")
        try context.yield(.start(["steps": .int(steps)]))
        for step in 1...max(steps, 1) {
            try context.sleep(for: .milliseconds(delay))
            if step == failAt {
                throw PrefabError("STEP_FAILED", "step \(step) of \(steps) failed on purpose")
            }
            try context.yield(.progress(current: step, total: steps, message: "step \(step)"))
        }
        try context.yield(.done(["steps": .int(steps)]))
    }
}
