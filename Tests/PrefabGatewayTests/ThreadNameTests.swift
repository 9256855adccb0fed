import Foundation
import Testing

@testable import PrefabGateway

/// Gateway threads carry their own names in the system's thread list (`top -H`, `ps -T`, `perf`),
/// not the name of whichever thread started them.
struct ThreadNameTests {
    @Test func aFunctionThreadIsNamedPrefabFunction() async throws {
        let pool = FunctionThreadPool(maxThreads: 2, stackSize: 512 << 10, idleTimeout: 1)
        let name: String? = await withCheckedContinuation { continuation in
            if !pool.submit({ continuation.resume(returning: ThreadName.current) }) {
                continuation.resume(returning: nil)
            }
        }
        #expect(name == "prefab-function")
    }

    @Test func aNameLongerThanLinuxKeepsIsCutAtFifteenBytes() async throws {
        let name = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                ThreadName.setCurrent("prefab-a-name-longer-than-fifteen")
                continuation.resume(returning: ThreadName.current)
            }
        }
        #expect(name == "prefab-a-name-l")
    }
}
