import Testing

@testable import PoolvisorExport

@Test func yamlRendersAMapping() {
    #expect(yamlText(["a": "b"]).contains("a: b"))
}
