import PoolvisorConfig
import Testing

@testable import PoolvisorControl
@testable import PoolvisorCore

@Suite struct JSONTests {
    // MARK: Building and serializing

    @Test func literalsBuildTheSameValuesAsTheCases() {
        let built: JSON = ["pool": "web", "replicas": 3, "ratio": 0.5, "ready": true, "status": nil, "pids": [1, 2]]
        var object = JSONObject()
        object["pool"] = .string("web")
        object["replicas"] = .int(3)
        object["ratio"] = .double(0.5)
        object["ready"] = .bool(true)
        object["status"] = .null
        object["pids"] = .array([.int(1), .int(2)])
        #expect(built == .object(object))
        let name = "web"
        let interpolated: JSON = "pool \(name)"
        #expect(interpolated == .string("pool web"))
    }

    @Test func compactOutputHasNoWhitespaceAndKeepsInsertionOrder() {
        let value: JSON = ["z": 1, "a": [true, false, nil], "m": ["": "x"], "e": [], "o": [:], "d": -2.5]
        #expect(value.serialized == #"{"z":1,"a":[true,false,null],"m":{"":"x"},"e":[],"o":{},"d":-2.5}"#)
        #expect(value.description == value.serialized)
    }

    @Test func serializeIntoAppendsToTheBuffer() {
        var bytes = Array("x".utf8)
        JSON.array([1, "a"]).serialize(into: &bytes)
        #expect(bytes == Array(#"x[1,"a"]"#.utf8))
    }

    @Test(arguments: [
        #"null"#, #"true"#, #"false"#, #"0"#, #"-7"#, #"1.5"#, #""""#, #""a\"b\\c\n""#, #"[]"#, #"{}"#,
        #"[1,[2,[3,{}]],"x"]"#, #"{"b":{"c":[null,{"d":-0.25}]},"a":"é😀"}"#, #"{"a":1e+300,"b":5e-324}"#,
    ])
    func parsingThenSerializingGivesTheTextBack(text: String) throws {
        #expect(try JSON.parse(text).serialized == text)
    }

    @Test func prettyOutput() {
        let value: JSON = ["name": "web", "pids": [101, 102], "env": [:], "args": [], "limits": ["cpu": 0.5, "nested": [[]]]]
        #expect(
            value.pretty() == """
                {
                  "name": "web",
                  "pids": [
                    101,
                    102
                  ],
                  "env": {},
                  "args": [],
                  "limits": {
                    "cpu": 0.5,
                    "nested": [
                      []
                    ]
                  }
                }
                """)
        #expect(JSON.array([1, ["a": "b"]]).pretty(indent: 4) == "[\n    1,\n    {\n        \"a\": \"b\"\n    }\n]")
        #expect(JSON.string("x\ny").pretty() == #""x\ny""#)
        #expect(JSON.array([]).pretty() == "[]")
        #expect(JSON.array([1]).pretty(indent: -3) == "[\n1\n]")
        // Indentation wider than the 32 spaces written at a time.
        let wide = JSON.array([[1]]).pretty(indent: 20)
        #expect(
            wide == "[\n" + String(repeating: " ", count: 20) + "[\n" + String(repeating: " ", count: 40) + "1\n"
                + String(repeating: " ", count: 20) + "]\n]")
    }

    // MARK: Strings

    @Test func everyControlCharacterIsEscapedAndReadBack() throws {
        let short: [UInt8: String] = [0x08: #"\b"#, 0x09: #"\t"#, 0x0A: #"\n"#, 0x0C: #"\f"#, 0x0D: #"\r"#]
        let hex = Array("0123456789abcdef")
        for byte in UInt8(0)..<0x20 {
            let string = String(Unicode.Scalar(byte))
            let escape = short[byte] ?? "\\u00\(hex[Int(byte >> 4)])\(hex[Int(byte & 0xF)])"
            #expect(JSON.string(string).serialized == "\"\(escape)\"", "byte \(byte)")
            #expect(try JSON.parse("\"\(escape)\"") == .string(string), "byte \(byte)")
        }
        #expect(JSON.string("\u{1F}").serialized == #""\u001f""#)
    }

    @Test func quotesBackslashesAndLineSeparatorsAreEscaped() throws {
        let value = JSON.string("say \"hi\" \\ a\u{2028}b\u{2029}c")
        #expect(value.serialized == #""say \"hi\" \\ a\u2028b\u2029c""#)
        #expect(try JSON.parse(value.serialized) == value)
        // Other three-byte characters starting with E2 80 are written raw.
        #expect(JSON.string("a\u{2026}").serialized == "\"a\u{2026}\"")
    }

    @Test func everythingElseIsWrittenAsRawUTF8() {
        let value = JSON.string("é / 😀 \u{7F} 中")
        #expect(Array(value.serialized.utf8) == [0x22] + Array("é / 😀 \u{7F} 中".utf8) + [0x22])
    }

    @Test func unicodeEscapesIncludingSurrogatePairs() throws {
        #expect(try JSON.parse(#""\u00e9\u00C9 \ud83d\ude00 \uD83D\uDE00 \u0000 \u4e2d""#) == .string("éÉ 😀 😀 \u{0} 中"))
        #expect(try JSON.parse(#""\/\"\\""#) == .string("/\"\\"))
        #expect(try JSON.parse(#"["\udbff\udfff"]"#) == ["\u{10FFFF}"])
    }

    @Test func rawUTF8InStringsAndKeys() throws {
        let parsed = try JSON.parse(#"{"clé":"😀 中 é"}"#)
        #expect(parsed["clé"] == "😀 中 é")
        #expect(parsed.object?.keys == ["clé"])
    }

    // MARK: Numbers

    @Test func integersAtTheInt64BoundsStayIntegers() throws {
        #expect(try JSON.parse("9223372036854775807") == .int(.max))
        #expect(try JSON.parse("-9223372036854775808") == .int(.min))
        #expect(JSON.int(.max).serialized == "9223372036854775807")
        #expect(JSON.int(.min).serialized == "-9223372036854775808")
        #expect(try JSON.parse("-0") == .int(0))
        #expect(try JSON.parse("[0,-1,10]") == [0, -1, 10])
    }

    @Test func integersJustBeyondInt64BecomeDoubles() throws {
        #expect(try JSON.parse("9223372036854775808") == .double(9.223372036854775808e18))
        #expect(try JSON.parse("-9223372036854775809") == .double(-9.223372036854775808e18))  // rounds to -2^63
        #expect(try JSON.parse("9999999999999999999") == .double(1e19))  // 19 digits, too big
        #expect(try JSON.parse("10000000000000000000") == .double(1e19))  // 20 digits
        #expect(try JSON.parse("-10000000000000000000") == .double(-1e19))
        #expect(try JSON.parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try JSON.parse("1000000000000000000") == .int(1_000_000_000_000_000_000))  // 19 digits that fit
    }

    @Test func fractionsAndExponentsMakeDoubles() throws {
        #expect(try JSON.parse("1.0") == .double(1))
        #expect(try JSON.parse("1e2") == .double(100))
        #expect(try JSON.parse("-1.5E+3") == .double(-1500))
        #expect(try JSON.parse("25e-1") == .double(2.5))
        #expect(try JSON.parse("0.1") == .double(0.1))
        #expect(try JSON.parse("1e-400") == .double(0))  // underflow rounds to zero; only overflow is an error
        #expect(try JSON.parse("-0.0").double?.sign == .minus)
    }

    @Test func doublesSerializeAsValidJSON() throws {
        let expected: [(Double, String)] = [
            (1, "1.0"), (0.1, "0.1"), (-2.5, "-2.5"), (1e300, "1e+300"), (.leastNonzeroMagnitude, "5e-324"),
            (1e16, "1e+16"), (1e-5, "1e-05"), (-0.0, "-0.0"), (9_007_199_254_740_992, "9007199254740992.0"),
            (.greatestFiniteMagnitude, "1.7976931348623157e+308"),
            (.nan, "null"), (.infinity, "null"), (-.infinity, "null"),
        ]
        for (value, text) in expected {
            #expect(JSON.double(value).serialized == text)
            #expect(JSON.double(value).pretty() == text)
        }
    }

    @Test func everyFiniteDoubleRoundTripsExactly() throws {
        // Random bit patterns cover every exponent, subnormals included.
        var random = SplitMix64(seed: 0x5EED)
        var checked = 0
        while checked < 20_000 {
            let value = Double(bitPattern: random.next())
            guard value.isFinite else { continue }
            let parsed = try JSON.parse(JSON.double(value).serialized)
            #expect(parsed.double?.bitPattern == value.bitPattern, "\(value)")
            checked += 1
        }
    }

    // MARK: Accessors and objects

    @Test func accessorsReturnNilForOtherKinds() {
        let value: JSON = ["s": "x", "i": 3, "d": 2.0, "f": 2.5, "big": 1e19, "b": false, "n": nil, "a": [1, 2], "o": ["k": 1]]
        #expect(value["s"]?.string == "x")
        #expect(value["i"]?.int == 3)
        #expect(value["i"]?.double == 3)
        #expect(value["d"]?.int == 2)
        #expect(value["f"]?.int == nil)
        #expect(value["big"]?.int == nil)
        #expect(JSON.double(-9_223_372_036_854_775_808).int == .min)
        #expect(value["b"]?.bool == false)
        #expect(value["n"]?.isNull == true)
        #expect(value["s"]?.isNull == false)
        #expect(value["a"]?[1] == 2)
        #expect(value["a"]?[2] == nil)
        #expect(value["a"]?[-1] == nil)
        #expect(value["a"]?.array?.count == 2)
        #expect(value["o"]?["k"] == 1)
        #expect(value["o"]?.object?.keys == ["k"])
        #expect(value["missing"] == nil)
        #expect(value["s"]?.int == nil)
        #expect(value["i"]?.string == nil)
        #expect(value["s"]?["k"] == nil)
        #expect(value["s"]?[0] == nil)
        #expect(value[0] == nil)
        #expect(value.array == nil)
        #expect(JSON.string("true").bool == nil)
    }

    @Test func objectsKeepInsertionOrder() {
        var object: JSONObject = ["b": 1, "a": 2, "c": 3]
        #expect(object.keys == ["b", "a", "c"])
        object["a"] = "replaced"
        #expect(object.keys == ["b", "a", "c"])
        #expect(object["a"] == "replaced")
        object["b"] = nil
        #expect(object.keys == ["a", "c"])
        #expect(object["c"] == 3)  // positions after a removal still resolve
        object["b"] = .null
        #expect(object.keys == ["a", "c", "b"])
        #expect(object.count == 3)
        #expect(object.values == ["replaced", 3, nil])
        #expect(object.map(\.key) == ["a", "c", "b"])
        object["missing"] = nil
        #expect(object.count == 3)
        #expect(JSON.object(object).serialized == #"{"a":"replaced","c":3,"b":null}"#)
        #expect(object != ["c": 3, "a": "replaced", "b": nil])  // order is part of equality
        #expect(JSONObject().isEmpty)
    }

    @Test func largeObjectsKeepOrderAndFindKeysToo() throws {
        // Past a few keys the object indexes them; the index must follow every change.
        var object = JSONObject()
        for number in 0..<20 { object["k\(number)"] = .int(Int64(number)) }
        #expect(object.keys == (0..<20).map { "k\($0)" })
        #expect(object["k13"] == 13)
        object["k5"] = "five"
        object["k0"] = nil
        object["k10"] = nil
        object["k0"] = "again"
        #expect(object.keys == (1..<20).filter { $0 != 10 }.map { "k\($0)" } + ["k0"])
        for number in 1..<20 where number != 5 && number != 10 { #expect(object["k\(number)"] == .int(Int64(number))) }
        #expect(object["k5"] == "five")
        #expect(object["k10"] == nil)
        #expect(object["k0"] == "again")
        #expect(object.count == 19)

        let text = "{" + (0..<30).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + #","last":null}"#
        let parsed = try JSON.parse(text)
        #expect(parsed.object?.keys == (0..<30).map { "k\($0)" } + ["last"])
        #expect(parsed["last"]?.isNull == true)
        #expect(parsed["k28"] == 28)
        // The index finds a repeated key too.
        #expect(throws: JSONParseError(offset: text.utf8.count, message: "duplicate key 'k3'")) {
            try JSON.parse(String(text.dropLast()) + #","k3":"again"}"#)
        }
    }

    @Test func aLiteralWithARepeatedKeyKeepsTheFirstPositionAndTheLastValue() {
        let literal: JSONObject = ["k": 1, "j": 2, "k": 3]
        #expect(literal.keys == ["k", "j"])
        #expect(literal["k"] == 3)
    }

    // A request that says two things must do neither: `{"command":"status","command":"reload"}` once
    // ran the reload. RFC 8259 leaves duplicate names undefined; the parser refuses them at any depth.
    @Test(arguments: [
        Invalid(#"{"command":"status","command":"reload"}"#, 20, "duplicate key 'command'"),
        Invalid(#"{"a":1,"b":2,"a":1}"#, 13, "duplicate key 'a'"),
        Invalid(#"{"a":1, "a" :1}"#, 8, "duplicate key 'a'"),
        Invalid(#"{"v":1,"x":{"p":1,"p":2}}"#, 18, "duplicate key 'p'"),
        Invalid(#"[1,{"p":[{"q":1,"q":1}]}]"#, 16, "duplicate key 'q'"),
        Invalid(#"{"\u0061":1,"a":2}"#, 12, "duplicate key 'a'"),  // equal once unescaped
        Invalid(#"{"":1,"":2}"#, 6, "duplicate key ''"),
    ])
    func duplicateKeysAreAnError(invalid: Invalid) {
        #expect(throws: JSONParseError(offset: invalid.offset, message: invalid.message)) {
            try JSON.parse(invalid.bytes)
        }
    }

    @Test func theSameKeyInDifferentObjectsIsFine() throws {
        let parsed = try JSON.parse(#"{"a":{"a":1},"b":[{"a":2},{"a":3}],"c":{"b":{"a":4}}}"#)
        #expect(parsed["a"]?["a"] == 1)
        #expect(parsed["b"]?[1]?["a"] == 3)
        #expect(parsed["c"]?["b"]?["a"] == 4)
        // Keys that differ only in case or by a space are different keys.
        #expect(try JSON.parse(#"{"a":1,"A":2,"a ":3}"#).object?.count == 3)
    }

    @Test func aLongDuplicateKeyIsShortenedInTheMessage() {
        let key = String(repeating: "k", count: 100)
        #expect(throws: JSONParseError(offset: 106, message: "duplicate key '\(String(repeating: "k", count: 40))…'")) {
            try JSON.parse(#"{"\#(key)":1,"\#(key)":2}"#)
        }
    }

    @Test func aDuplicateKeyInARequestRunsNothing() {
        let result = ControlProtocol.Request.parse(Array(#"{"v":1,"command":"status","command":"reload"}"#.utf8))
        #expect(result == .failure(ControlProtocol.ProtocolError("bad request: invalid JSON at byte 26: duplicate key 'command'")))
        let nested = ControlProtocol.Request.parse(Array(#"{"v":1,"command":"status","x":{"pool":1,"pool":2}}"#.utf8))
        #expect(nested == .failure(ControlProtocol.ProtocolError("bad request: invalid JSON at byte 40: duplicate key 'pool'")))
    }

    // MARK: Parsing

    @Test func whitespaceAroundAndInsideIsAllowed() throws {
        let parsed = try JSON.parse(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" :\n\"c\" } \n")
        #expect(parsed == ["a": [1, 2], "b": "c"])
    }

    @Test func parsesAnyCollectionOfBytesWithOffsetsFromItsStart() throws {
        let bytes = Array("xx[1,true]".utf8)
        #expect(try JSON.parse(bytes[2...]) == [1, true])  // contiguous slice
        #expect(try JSON.parse(bytes.dropFirst(2).lazy.map { $0 }) == [1, true])  // not contiguous: copied
        let bad = Array("xx[1 x]".utf8)  // the error is at byte 5 of the array, byte 3 of the slice
        #expect(throws: JSONParseError(offset: 3, message: "expected ',' or ']' after an array element")) {
            try JSON.parse(bad[2...])
        }
        #expect(throws: JSONParseError(offset: 3, message: "expected ',' or ']' after an array element")) {
            try JSON.parse(bad[2...].lazy.map { $0 })
        }
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        var bytes: [UInt8]
        var offset: Int
        var message: String

        init(_ text: String, _ offset: Int, _ message: String) { self.init(Array(text.utf8), offset, message) }
        init(_ bytes: [UInt8], _ offset: Int, _ message: String) {
            self.bytes = bytes
            self.offset = offset
            self.message = message
        }

        var testDescription: String { String(decoding: bytes, as: UTF8.self).debugDescription }
    }

    @Test(arguments: [
        Invalid("", 0, "unexpected end of input, expected a value"),
        Invalid(" \n ", 3, "unexpected end of input, expected a value"),
        Invalid("[1,2,]", 4, "trailing comma before ']'"),
        Invalid(#"{"a":1 , }"#, 7, "trailing comma before '}'"),
        Invalid("01", 0, "leading zeros are not allowed"),
        Invalid("[-012]", 1, "leading zeros are not allowed"),
        Invalid("-", 1, "unexpected end of input, expected a digit after '-'"),
        Invalid("-Infinity", 1, "expected a digit after '-'"),
        Invalid("+1", 0, "expected a value"),
        Invalid(".5", 0, "expected a value"),
        Invalid("1.", 2, "unexpected end of input, expected a digit after the decimal point"),
        Invalid("1.e5", 2, "expected a digit after the decimal point"),
        Invalid("1e+", 3, "unexpected end of input, expected a digit in the exponent"),
        Invalid("[1e400]", 1, "number out of range"),
        Invalid("-1e400", 0, "number out of range"),
        Invalid("NaN", 0, "expected a value"),
        Invalid("0x10", 1, "unexpected data after the value"),
        Invalid(#""abc"#, 0, "unterminated string"),
        Invalid(#"["a","abc\"#, 5, "unterminated string"),
        Invalid(#""a\x""#, 2, "invalid escape sequence"),
        Invalid(#""\u12G4""#, 1, #"expected four hex digits after '\u'"#),
        Invalid(#""\u12""#, 1, #"expected four hex digits after '\u'"#),
        Invalid(#""ab\ud800""#, 3, #"unpaired surrogate in a \u escape"#),
        Invalid(#""\udc00\ud800""#, 1, #"unpaired surrogate in a \u escape"#),
        Invalid(#""\ud800\u0041""#, 1, #"unpaired surrogate in a \u escape"#),
        Invalid(#""\ud800\n""#, 1, #"unpaired surrogate in a \u escape"#),
        Invalid(#""\ud800\uZZZZ""#, 7, "expected four hex digits after '\\u'"),
        Invalid("\"a\nb\"", 2, "unescaped control character in a string"),
        Invalid([0x22, 0x61, 0xFF, 0x22], 2, "invalid UTF-8 in a string"),
        Invalid([0x22, 0x80, 0x22], 1, "invalid UTF-8 in a string"),  // a lone continuation byte
        Invalid([0x22, 0xC0, 0xAF, 0x22], 1, "invalid UTF-8 in a string"),  // overlong '/'
        Invalid([0x22, 0xE0, 0x80, 0xAF, 0x22], 1, "invalid UTF-8 in a string"),  // overlong '/'
        Invalid([0x22, 0xED, 0xA0, 0x80, 0x22], 1, "invalid UTF-8 in a string"),  // an encoded surrogate
        Invalid([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1, "invalid UTF-8 in a string"),  // above U+10FFFF
        Invalid([0x22, 0x61, 0xE2, 0x82, 0x22], 2, "invalid UTF-8 in a string"),  // truncated
        Invalid([0x22, 0xE2, 0x82], 1, "invalid UTF-8 in a string"),  // truncated by the end
        Invalid([0xEF, 0xBB, 0xBF, 0x31], 0, "expected a value"),  // a byte order mark
        Invalid("1 2", 2, "unexpected data after the value"),
        Invalid("{} x", 3, "unexpected data after the value"),
        Invalid("nullx", 4, "unexpected data after the value"),
        Invalid("tru", 0, "expected 'true'"),
        Invalid("[fals]", 1, "expected 'false'"),
        Invalid("[1 2]", 3, "expected ',' or ']' after an array element"),
        Invalid("[1", 2, "unexpected end of input, expected ',' or ']' after an array element"),
        Invalid(#"{"a" 1}"#, 5, "expected ':' after an object key"),
        Invalid(#"{"a":1 "b":2}"#, 7, "expected ',' or '}' after an object member"),
        Invalid("{1:2}", 1, "expected a string key or '}'"),
        Invalid(#"{"a":1,2}"#, 7, "expected a string key"),
        Invalid("// comment\n1", 0, "expected a value"),
        Invalid("[1,\u{0}]", 3, "expected a value"),
    ])
    func rejectsInvalidInputAtItsOffset(invalid: Invalid) {
        #expect(throws: JSONParseError(offset: invalid.offset, message: invalid.message)) {
            try JSON.parse(invalid.bytes)
        }
    }

    @Test func errorsPrintTheirOffset() throws {
        let error = #expect(throws: JSONParseError.self) { try JSON.parse(#"{"pool": "web" "replicas": 3}"#) }
        #expect(error?.description == "invalid JSON at byte 15: expected ',' or '}' after an object member")
    }

    // MARK: Depth

    @Test func nestingUpToTheLimitParses() throws {
        let deepest = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(try JSON.parse(deepest).serialized == deepest)
        #expect(throws: JSONParseError(offset: 64, message: "nested more than 64 levels deep")) {
            try JSON.parse("[" + deepest + "]")
        }
        // Objects count too, and so do empty containers.
        #expect(try JSON.parse(#"{"a":[{}]}"#, maximumDepth: 3) == ["a": [[:]]])
        #expect(throws: JSONParseError(offset: 6, message: "nested more than 2 levels deep")) {
            try JSON.parse(#"{"a":[{}]}"#, maximumDepth: 2)
        }
        #expect(try JSON.parse("1", maximumDepth: 0) == 1)
        #expect(throws: JSONParseError(offset: 0, message: "nested more than 0 levels deep")) {
            try JSON.parse("[]", maximumDepth: 0)
        }
    }

    @Test func veryDeepNestingThrowsInsteadOfCrashing() {
        let brackets = String(repeating: "[", count: 100_000)
        #expect(throws: JSONParseError(offset: 64, message: "nested more than 64 levels deep")) {
            try JSON.parse(brackets)
        }
        // With no effective limit the parser still does not recurse: it reaches the end of the input.
        #expect(throws: JSONParseError(offset: 100_000, message: "unexpected end of input, expected a value")) {
            try JSON.parse(brackets, maximumDepth: .max)
        }
        let objects = String(repeating: #"{"a":"#, count: 100_000)
        #expect(throws: JSONParseError(offset: 320, message: "nested more than 64 levels deep")) {
            try JSON.parse(objects)
        }
    }

    // MARK: Speed

    @Test func parsesAMegabyteQuickly() throws {
        // 1 MB of typical status output: objects with strings (some escaped), integers, doubles, arrays.
        var pools: [JSON] = []
        var size = 0
        while size < 1_000_000 {
            let pool: JSON = [
                "name": .string("pool-\(pools.count)"), "command": "/usr/bin/worker --queue \"jobs\"\n",
                "replicas": .int(Int64(pools.count)), "load": .double(Double(pools.count) / 7), "ready": true,
                "pids": [4101, 4102, 4103], "status": "processing 3 jobs — ünïcödé",
            ]
            size += pool.serialized.utf8.count + 1
            pools.append(pool)
        }
        let text = JSON.array(pools).serialized
        let clock = ContinuousClock()
        var parsed = JSON.null
        let elapsed = try clock.measure { parsed = try JSON.parse(text) }
        #expect(parsed == .array(pools))
        #expect(parsed.serialized == text)
        // Tens of milliseconds in a debug build; the bound is loose for loaded machines, but a
        // quadratic slip (e.g. copying arrays as they grow) would blow far past it.
        #expect(elapsed < .seconds(2), "parsing \(text.utf8.count) bytes took \(elapsed)")
    }
}

@Suite struct JSONWriterTests {
    @Test func writesWhatTheSameValueSerializesTo() {
        var w = JSONWriter()
        w.object { w in
            w.member("s", "a\"b\\c\n\u{1}\u{2028}é😀")
            w.member("i", Int.min)
            w.member("j", Int.max)
            w.member("z", 0)
            w.member("d", -0.25)
            w.member("inf", Double.infinity)
            w.member("t", true)
            w.member("none", String?.none)
            w.member("some", Int?.some(-7))
            w.member("list", ["x", ""])
            w.array("empty") { _ in }
            w.object("nested") { w in
                w.array("a") { w in
                    w.value(1)
                    w.object { _ in }
                    w.null()
                    w.value(JSON.object(["k": [1, "v"]]))
                }
            }
        }
        let expected: JSON = [
            "s": "a\"b\\c\n\u{1}\u{2028}é😀", "i": .int(Int64.min), "j": .int(Int64.max), "z": 0, "d": -0.25,
            "inf": .double(.infinity), "t": true, "none": nil, "some": -7, "list": ["x", ""], "empty": [],
            "nested": ["a": [1, [:], nil, ["k": [1, "v"]]]],
        ]
        #expect(String(decoding: w.bytes, as: UTF8.self) == expected.serialized)
    }

    @Test func aStatusAnswerIsTheReportInTheEnvelope() throws {
        let report = StatusReport(
            supervisor: .init(
                version: "1", pid: 7, instance: "x", file: "/p.toml", phase: "running", uptimeSeconds: 1.5,
                summary: "ok", lastReload: nil, warnings: ["w"]),
            pools: [
                .init(
                    name: "p", state: "Available", desired: 1, replicasInFile: 1, scaledTo: nil, running: 1, ready: 1,
                    rollout: nil, waiting: nil, disruptionBudget: nil, cpuRequest: 0.5, autoscaling: nil,
                    replicas: [
                        .init(
                            index: 0, pid: 9, state: "Ready", ready: true, restarts: 0, ageSeconds: 2,
                            lastExit: nil, lastExitAgoSeconds: nil, draining: nil, retiring: false, outdated: false,
                            busy: nil, message: "m", usage: ProcessUsage(cpuSeconds: 1, cpuPercent: 50, rssBytes: 4096))
                    ])
            ])
        let answer = try JSON.parse(ControlProtocol.response(report, reservingCapacity: 16))
        #expect(answer == ["v": 1, "ok": true, "status": report.json])
        #expect(try StatusReport(json: #require(answer["status"])) == report)
        #expect(report.json["pools"]?[0]?["cpu_utilization_percent"]?.double == 100)
    }
}
