import PoolvisorConfig
import PoolvisorControl
import PoolvisorCore
import Testing

@Suite struct EnvFileTests {
    @Test func parsesTheUsualDotenvForms() {
        let text = """
            # database
            DATABASE_URL=postgres://u:p4ss@db/app
            export REDIS_URL = redis://cache:6379/0
            EMPTY=
            SINGLE='literal $HOME \\n # not a comment'
            DOUBLE="line1\\nline2 \\"quoted\\""
            UNQUOTED=value # trailing comment
            HASH=abc#def
            MULTI="first
            second"

            """
        let (env, diagnostics) = EnvFile.parse(text, file: "app.env")
        #expect(diagnostics.isEmpty)
        #expect(env["DATABASE_URL"] == "postgres://u:p4ss@db/app")
        #expect(env["REDIS_URL"] == "redis://cache:6379/0")
        #expect(env["EMPTY"] == "")
        #expect(env["SINGLE"] == "literal $HOME \\n # not a comment")
        #expect(env["DOUBLE"] == "line1\nline2 \"quoted\"")
        #expect(env["UNQUOTED"] == "value")
        #expect(env["HASH"] == "abc#def")
        #expect(env["MULTI"] == "first\nsecond")
        #expect(env.keys == ["DATABASE_URL", "REDIS_URL", "EMPTY", "SINGLE", "DOUBLE", "UNQUOTED", "HASH", "MULTI"])
    }

    @Test func errorsNameFileLineAndKeyButNeverTheValue() {
        let text = """
            GOOD=1
            this line has no equals sign s3cr3t
            1BAD=s3cr3t
            API_KEY="s3cr3t-unterminated
            """
        let (env, diagnostics) = EnvFile.parse(text, file: "/etc/app.env")
        #expect(env["GOOD"] == "1")
        #expect(diagnostics.map(\.location.line) == [2, 3, 4])
        #expect(diagnostics[2].description == "/etc/app.env:4: error: line 4: the value of API_KEY has no closing double quote")
        for d in diagnostics { #expect(!d.description.contains("s3cr3t")) }
    }

    @Test func environmentNeverDescribesItsValues() {
        let env = Environment([("DATABASE_PASSWORD", "hunter2")])
        var dumped = ""
        dump(env, to: &dumped)
        for text in [env.description, env.debugDescription, String(describing: env), String(reflecting: env), dumped] {
            #expect(!text.contains("hunter2"))
            #expect(text.contains("DATABASE_PASSWORD"))
        }
    }
}
