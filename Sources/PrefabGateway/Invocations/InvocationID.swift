/// Invocation ids: 128 random bits as 32 lowercase hex digits, so they cannot be guessed.
enum InvocationID {
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let bits = (generator.next() as UInt64, generator.next() as UInt64)
        // Written straight into the string: one allocation, no intermediate strings.
        return String(unsafeUninitializedCapacity: 32) { digits in
            for nibble in 0..<32 {
                let value = nibble < 16 ? bits.0 : bits.1
                let digit = UInt8(truncatingIfNeeded: value >> UInt64(60 - 4 * (nibble % 16))) & 0xF
                digits[nibble] = digit < 10 ? 48 + digit : 87 + digit  // 0-9, a-f
            }
            return 32
        }
    }

    static func isValid(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
