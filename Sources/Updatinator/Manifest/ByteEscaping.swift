/// The manifest's escaping of arbitrary bytes: every byte outside `!`…`~`, and `%` and `=`, becomes `%XX`.
///
/// The encoding is canonical: each byte string has exactly one escaped form, so decoding
/// rejects escapes of bytes that must appear literally and lowercase hex digits.
public enum ByteEscaping {
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    static func mustEscape(_ b: UInt8) -> Bool {
        b <= 0x20 || b >= 0x7f || b == UInt8(ascii: "%") || b == UInt8(ascii: "=")
    }

    public static func escape<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func append<C: Collection>(_ bytes: C, to out: inout [UInt8]) where C.Element == UInt8 {
        for b in bytes {
            if mustEscape(b) {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xf)])
            } else {
                out.append(b)
            }
        }
    }

    /// Decodes an escaped field, or returns nil when it is not in canonical escaped form.
    public static func unescape<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8, C.Index == Int {
        var out = [UInt8]()
        out.reserveCapacity(text.count)
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < text.endIndex,
                      let hi = hexValue(text[i + 1]), let lo = hexValue(text[i + 2]) else { return nil }
                let b = hi << 4 | lo
                guard mustEscape(b) else { return nil }
                out.append(b)
                i += 3
            } else {
                guard !mustEscape(c) else { return nil }
                out.append(c)
                i += 1
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
