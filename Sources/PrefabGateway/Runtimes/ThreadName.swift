#if canImport(Glibc)
    import Glibc
#endif

/// The name a gateway thread shows in `top -H`, `ps -T`, `perf` and `gdb`. Foundation's
/// `Thread.name`, set before `start()`, does not reach the system on Linux: every function thread
/// showed the name of the event loop that started it (`NIO-SGLTN-1-#2`), which hid in profiles
/// which CPU time was the event loops' and which the functions'.
enum ThreadName {
    /// Names the calling thread. Linux keeps 15 bytes; a longer name is cut there.
    static func setCurrent(_ name: String) {
        #if canImport(Glibc)
            guard let setName = Self.setName else { return }
            _ = setName(pthread_self(), String(decoding: name.utf8.prefix(15), as: UTF8.self))
        #endif
    }

    /// The calling thread's name as the system has it ("" where it cannot be read).
    static var current: String {
        #if canImport(Glibc)
            guard let getName = Self.getName else { return "" }
            var buffer = [CChar](repeating: 0, count: 64)
            guard getName(pthread_self(), &buffer, buffer.count) == 0 else { return "" }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #else
            return ""
        #endif
    }

    #if canImport(Glibc)
        // Looked up, as Glibc's module map declares them only for _GNU_SOURCE.
        private static let setName = dlsym(nil, "pthread_setname_np").map {
            unsafeBitCast($0, to: (@convention(c) (pthread_t, UnsafePointer<CChar>) -> Int32).self)
        }
        private static let getName = dlsym(nil, "pthread_getname_np").map {
            unsafeBitCast($0, to: (@convention(c) (pthread_t, UnsafeMutablePointer<CChar>, Int) -> Int32).self)
        }
    #endif
}
