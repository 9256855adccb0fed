import CProcessSpawn

/// The name a gateway thread shows in `top -H`, `ps -T`, `perf` and `gdb`. Foundation's
/// `Thread.name`, set before `start()`, does not reach the system on Linux: every function thread
/// showed the name of the event loop that started it (`NIO-SGLTN-1-#2`), which hid in profiles
/// which CPU time was the event loops' and which the functions'.
enum ThreadName {
    /// Names the calling thread. Linux keeps 15 bytes; a longer name is cut there.
    static func setCurrent(_ name: String) {
        _ = prefab_set_thread_name(String(decoding: name.utf8.prefix(15), as: UTF8.self))
    }

    /// The calling thread's name as the system has it ("" where it cannot be read).
    static var current: String {
        var buffer = [CChar](repeating: 0, count: 64)
        guard prefab_thread_name(&buffer, buffer.count) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
