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
}
