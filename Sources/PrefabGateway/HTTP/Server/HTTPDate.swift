import Foundation
import Synchronization

/// The `Date` header's value (RFC 9110's IMF-fixdate), made at most once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static var now: String {
        let second = time(nil)
        return cache.withLock { cache in
            if cache.second != second {
                var parts = tm()
                var seconds = second
                gmtime_r(&seconds, &parts)
                var buffer = [CChar](repeating: 0, count: 40)
                let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
                cache = (second, String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            return cache.text
        }
    }
}
