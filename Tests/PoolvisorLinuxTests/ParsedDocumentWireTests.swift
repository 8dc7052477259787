import PoolvisorConfig
import PoolvisorCore
import Testing

@testable import PoolvisorControl
@testable import PoolvisorDaemon

/// The parser child's answer (ParsedDocument+Wire.swift) crosses unchanged, and a malformed one is refused.
@Suite struct ParsedDocumentWireTests {
    @Test func everyKindOfValueCrossesUnchanged() throws {
        let table = ConfigTable([
            ("s", .string("a\"\n\u{202E}")), ("i", .integer(Int.min)), ("f", .float(0.1)), ("inf", .float(-.infinity)),
            ("b", .boolean(false)), ("when", .other(typeName: "date")), ("", .array([])),
            ("nested", .table(ConfigTable([("a", .array([.integer(1), .array([.float(2.5), .string("x")]), .table(ConfigTable())]))]))),
        ])
        let document = ParsedDocument.parsed(table, unreadableKeys: [UnreadableKey(table: ["pools", "a"], key: "k")])
        #expect(try ParsedDocument(wire: document.wire) == document)
        let error = ParsedDocument.syntaxError(line: 3, column: 9, message: "expected a value")
        #expect(try ParsedDocument(wire: error.wire) == error)
        // NaN equals nothing, so it is checked by its wire form.
        let nan = ParsedDocument.parsed(ConfigTable([("n", .float(.nan))]), unreadableKeys: [])
        #expect(try ParsedDocument(wire: nan.wire).wire == nan.wire)
    }

    @Test func theDeepestDocumentTheLocatorAllowsIsRead() throws {
        var value = ConfigValue.integer(1)
        // Tables cost the most levels of JSON: three each.
        for _ in 0..<SourceLocator.maximumDepth { value = .table(ConfigTable([("a", value)])) }
        let document = ParsedDocument.parsed(ConfigTable([("a", value)]), unreadableKeys: [])
        #expect(try ParsedDocument(wire: document.wire) == document)
    }

    @Test(arguments: [
        "", "[]", #"{"parsed":{"table":{}}}"#, #"{"parsed":{"table":[["k",{"s":1}]],"unreadable":[]}}"#,
        #"{"parsed":{"table":[["k",{"s":"a","i":1}]],"unreadable":[]}}"#, #"{"parsed":{"table":[["k"]],"unreadable":[]}}"#,
        #"{"parsed":{"table":[["k",{"x":"1.5"}]],"unreadable":[]}}"#, #"{"syntax_error":{"line":"1"}}"#,
    ])
    func aMalformedAnswerIsRefused(text: String) {
        #expect(throws: ParsedDocument.WireError.self) { try ParsedDocument(wire: Array(text.utf8)) }
    }
}
