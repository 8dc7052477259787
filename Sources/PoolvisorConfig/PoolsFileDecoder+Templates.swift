import PoolvisorCore

extension PoolsFileDecoder {
    /// `command` and `[pools.X.env]` values as `ReplicaTemplate`s: `{pool}`, `{instance}` and
    /// `{hostname}` written in now, `{replica}` left for each launch (the text stays in place of the value,
    /// and the template goes to `perReplicaArguments` / `perReplicaEnvironment`). Env files are not
    /// templates: their values are the application's, braces and all.
    static func perReplica(
        command: [String], environment: [(key: String, value: String)], pool: String, instance: String, hostname: String,
        reader r: TableReader
    ) -> (command: [String], environment: [(key: String, value: String)], arguments: [Int: ReplicaTemplate], variables: [String: ReplicaTemplate]) {
        func expand(_ text: String, key: [String]) -> (String, ReplicaTemplate?) {
            switch ReplicaTemplate.read(text) {
            case .failure(let failure):
                r.sink.error(key, "'\(key.joined(separator: "."))': \(failure.message)")
                return (text, nil)
            case .foreign(_, let why):
                r.sink.warning(
                    key,
                    "'\(key.joined(separator: "."))': braces that are not a placeholder of poolvisor's (\(why)); passed to the worker as written (double them, {{ and }}, to say so and silence this)"
                )
                return (text, nil)
            case .template(let template):
                let resolved = template.resolving(pool: pool, instance: instance, hostname: hostname)
                guard resolved.variesByReplica else { return (resolved.expand(pool: pool, instance: instance, hostname: hostname, replica: 0), nil) }
                return (resolved.description, resolved)
            }
        }
        var arguments: [Int: ReplicaTemplate] = [:]
        var variables: [String: ReplicaTemplate] = [:]
        var expandedCommand: [String] = []
        for (i, argument) in command.enumerated() {
            let (text, template) = expand(argument, key: r.keyPath("command"))
            if let template {
                if i == 0 {
                    r.sink.error(r.keyPath("command"), "'\(r.name("command"))': the program itself cannot differ per replica ({replica} in its first element)")
                }
                arguments[i] = template
            }
            expandedCommand.append(text)
        }
        var expandedEnvironment: [(key: String, value: String)] = []
        for (key, value) in environment {
            let (text, template) = expand(value, key: r.path + ["env", key])
            if let template { variables[key] = template }
            expandedEnvironment.append((key, text))
        }
        return (expandedCommand, expandedEnvironment, arguments, variables)
    }
}
