import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// The C allocator, for what Swift does not expose.
public enum Allocator {
    /// Asks glibc's malloc to hand free pages back to the system (`malloc_trim(0)`): freed memory
    /// otherwise stays in its arenas, counted in RSS, after a busy spell. A no-op elsewhere.
    public static func giveBackFreeMemory() {
        #if canImport(Glibc)
            // Looked up, as Glibc's module map leaves malloc.h out.
            guard let symbol = dlsym(nil, "malloc_trim") else { return }
            let trim = unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
            _ = trim(0)
        #endif
    }

    /// `giveBackFreeMemory` on a queue of its own, for callers on an event loop: a trim walks the
    /// heap (0.9–12.7 ms after the benchmark's bursts and tickers, timed per call), and where a
    /// call ended it held up every stream of that loop for as long.
    static func giveBackFreeMemorySoon() {
        trimQueue.async { giveBackFreeMemory() }
    }

    private static let trimQueue = DispatchQueue(label: "prefab-gateway.trim", qos: .utility)
}
