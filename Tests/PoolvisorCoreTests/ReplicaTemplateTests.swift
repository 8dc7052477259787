import PoolvisorCore
import Testing

/// Per-replica templates (issue 15, part 2): parsing, expansion, and the errors `check` will show.
@Suite struct ReplicaTemplateTests {
    func expand(_ text: String, replica: Int = 2) throws -> String {
        try ReplicaTemplate.parse(text).get().expand(pool: "kb", instance: "prod", hostname: "host1", replica: replica)
    }

    func failure(_ text: String) -> String? {
        if case .failure(let f) = ReplicaTemplate.parse(text) { return f.message }
        return nil
    }

    @Test func namesAndOffsetsExpandPerReplica() throws {
        #expect(try expand("-n w{replica}@%h") == "-n w2@%h")
        #expect(try expand("{pool}-{replica}") == "kb-2")
        #expect(try expand("{instance}.{hostname}") == "prod.host1")
        #expect(try (0..<3).map { try expand("{replica + 8000}", replica: $0) } == ["8000", "8001", "8002"])
        #expect(try expand("{replica - 1}", replica: 3) == "2")
        #expect(try expand("{ replica  +  10 }") == "12")
        #expect(try ReplicaTemplate.parse("--port={replica + 3001}").get().variesByReplica)
        #expect(try !ReplicaTemplate.parse("{pool}").get().variesByReplica)
    }

    @Test func bracesAndTheShellsDollarBraceAreLeftAlone() throws {
        #expect(try expand("no braces at all") == "no braces at all")
        #expect(try expand("{{\"a\": 1}}") == "{\"a\": 1}")
        #expect(try expand("echo ${HOME} {replica}") == "echo ${HOME} 2")
        #expect(try expand("a } b") == "a } b")
        // What a template prints reads back as the same template.
        for text in ["{{x}} {replica + 8000}", "echo ${HOME}-{pool}", "{replica - 2}}}", "plain"] {
            let t = try ReplicaTemplate.parse(text).get()
            #expect(try ReplicaTemplate.parse(t.description).get() == t, "\(text)")
        }
    }

    @Test func errorsSayWhatIsWrongAndSuggest() {
        #expect(
            failure("{replcia}") == "unknown name '{replcia}'; did you mean 'replica'?; known: {pool}, {replica}, {replica + N}, {instance}, {hostname} ('{{' for a literal brace)")
        #expect(failure("w{replica") == "'{' at character 2 is not closed (write '{{' for a literal brace)")
        #expect(failure("{pool + 1}") == "'{pool + 1}': only {replica} takes an offset, written {replica + N}")
        #expect(failure("{replica + x}") == "'{replica + x}': the offset must be a whole number from 0 to 1000000")
        #expect(failure("{replica + 99999999999999999999}") == "'{replica + 99999999999999999999}': the offset must be a whole number from 0 to 1000000")
        let escaped = failure("{\u{1B}[31m}") ?? ""
        #expect(escaped.hasPrefix("unknown name '{") && !escaped.contains("\u{1B}"))
        if case .failure(let f) = ReplicaTemplate.parse("ab{nope}") { #expect(f.offset == 2) }
    }
}
