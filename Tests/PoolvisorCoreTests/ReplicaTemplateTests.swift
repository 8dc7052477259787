import PoolvisorConfig
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

/// Templates in a pools file: written in where they can be, expanded at each launch, refused with file,
/// line and key.
@Suite struct ReplicaTemplateFileTests {
    let text = """
        [supervisor]
        name = "acme"
        [pools.kb]
        command = ["/bin/sleep", "--port={replica + 8000}", "{pool}@{hostname}"]
        replicas = 3
        [pools.kb.env]
        DBOS__VMID = "{instance}-{pool}-{replica}"
        PLAIN = "{{literal}}"
        """

    func root(command: [String], env: [String: String]) -> ConfigTable {
        table([
            "supervisor": table(["name": .string("acme")]),
            "pools": table([
                "kb": table([
                    "command": .array(command.map { .string($0) }), "replicas": .integer(3),
                    "env": .table(ConfigTable(env.sorted { $0.key < $1.key }.map { ($0.key, ConfigValue.string($0.value)) })),
                ])
            ]),
        ]).asTable
    }

    @Test func eachReplicaGetsItsOwnPortAndName() throws {
        let result = decode(
            text, root(command: ["/bin/sleep", "--port={replica + 8000}", "{pool}@{hostname}"], env: ["DBOS__VMID": "{instance}-{pool}-{replica}", "PLAIN": "{{literal}}"]))
        let file = try #require(result.file, "\(result.diagnostics)")
        let kb = try #require(file.pool(named: "kb"))
        #expect(kb.command == ["/bin/sleep", "--port={replica + 8000}", "kb@testhost"])
        #expect(kb.environment["PLAIN"] == "{literal}")
        var reconciler = Reconciler(file: file, notifyDirectory: nil)
        let launches = (0..<3).map { reconciler.launch(for: ReplicaID(pool: "kb", index: $0)) }
        #expect(launches.map { $0.arguments[1] } == ["--port=8000", "--port=8001", "--port=8002"])
        #expect(launches.map { $0.arguments[2] } == ["kb@testhost", "kb@testhost", "kb@testhost"])
        #expect(launches.map { $0.environment["DBOS__VMID"] } == ["acme-kb-0", "acme-kb-1", "acme-kb-2"])
    }

    @Test func unknownNamesAndAProgramThatVariesAreErrorsWithFileLineAndKey() {
        let text = """
            [supervisor]
            name = "acme"
            [pools.kb]
            command = ["/bin/sleep", "{replcia}"]
            replicas = 3
            [pools.kb.env]
            PORT = "{replica + x}"
            """
        let result = decode(text, root(command: ["/bin/sleep", "{replcia}"], env: ["PORT": "{replica + x}"]))
        #expect(result.file == nil)
        let messages = result.diagnostics.map(\.description)
        #expect(messages.contains { $0.contains(":4:1: error: 'pools.kb.command': unknown name '{replcia}'; did you mean 'replica'?") }, "\(messages)")
        #expect(messages.contains { $0.contains(":7:1: error: 'pools.kb.env.PORT': '{replica + x}': the offset must be a whole number") }, "\(messages)")
        let program = decode(text, root(command: ["/bin/{replica}"], env: [:]))
        #expect(program.diagnostics.map(\.description).contains { $0.contains("the program itself cannot differ per replica") })
    }

    @Test func aChangedTemplateRollsThePool() throws {
        let a = try #require(decode(text, root(command: ["/bin/sleep", "--port={replica + 8000}"], env: [:])).file?.pool(named: "kb"))
        let b = try #require(decode(text, root(command: ["/bin/sleep", "--port={replica + 9000}"], env: [:])).file?.pool(named: "kb"))
        #expect(b.workerChanges(from: a) == ["command"])
    }

    @Test func theWorkersOwnBracesArePassedAsWrittenWithAWarning() throws {
        let code = "print(f\"fork refused after {started} sleepers: {e.strerror}\")"
        let result = decode(text, root(command: ["/bin/sleep", code], env: ["JSON": "{\"a\": 1}"]))
        let kb = try #require(result.file?.pool(named: "kb"), "\(result.diagnostics)")
        #expect(kb.command[1] == code)
        #expect(kb.environment["JSON"] == "{\"a\": 1}")
        #expect(kb.template.perReplicaArguments.isEmpty)
        #expect(result.diagnostics.map(\.description).contains { $0.contains("warning: 'pools.kb.command': braces that are not a placeholder of poolvisor's") })
        // Beside one of poolvisor's own, or misspelt like one, they are errors.
        #expect(decode(text, root(command: ["/bin/sleep", "{replica} {started}"], env: [:])).file == nil)
        #expect(decode(text, root(command: ["/bin/sleep", "{replcia}"], env: [:])).file == nil)
    }
}
