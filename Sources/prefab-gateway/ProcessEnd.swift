import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the `serve` process ends: within its shutdown grace after SIGTERM or SIGINT, and at once
/// when it crashes.
enum ProcessEnd {
    /// Ends the process `grace` seconds from now, unless the graceful shutdown that began has
    /// ended it by then: a connection that does not close (a client that reads nothing, a
    /// function stuck in a blocking call) must not keep the process, nor its port.
    static func exit(after grace: Double, logger: Logger) {
        // A thread of its own: it fires even if every other thread is busy or blocked.
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: grace)
            logger.warning("the graceful shutdown did not end within --shutdown-grace (\(grace) s): exiting now")
            _exit(1)
        }
    }

    /// A fatal signal (a crash) ends the process at once, killed by that signal, so that a
    /// supervisor can restart it on the same port. By default the Swift runtime first runs its
    /// backtracer, which took minutes on a loaded machine while the dead process kept the port.
    /// Setting `SWIFT_BACKTRACE` (e.g. `enable=yes`) keeps the runtime's handling.
    static func onFatalSignalEndAtOnce() {
        guard ProcessInfo.processInfo.environment["SWIFT_BACKTRACE"] == nil else { return }
        for signalNumber in [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT] {
            _ = signal(signalNumber) { signalNumber in
                // Only async-signal-safe calls here: write, signal, raise.
                let message: StaticString =
                    "prefab-gateway: fatal signal, ending at once (SWIFT_BACKTRACE=enable=yes for a backtrace)\n"
                _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
                _ = signal(signalNumber, SIG_DFL)
                _ = raise(signalNumber)
            }
        }
    }
}
