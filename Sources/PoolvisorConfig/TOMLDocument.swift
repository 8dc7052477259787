import PoolvisorCore
import TOMLKit

/// TOMLKit's parse of a pools file, as plain values.
public enum TOMLDocument {
    public static func parse(_ text: String) -> ParsedDocument {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            return .syntaxError(line: error.source.begin.line, column: error.source.begin.column, message: describe(error))
        } catch {
            return .syntaxError(line: 0, column: 0, message: "not a valid TOML file: \(error)")
        }
        var unreadable: [UnreadableKey] = []
        let converted = convert(table, path: [], unreadable: &unreadable)
        return .parsed(converted, unreadableKeys: unreadable)
    }

    private static func describe(_ error: TOMLParseError) -> String {
        var message = error.description
        for prefix in ["Error while parsing ", "error while parsing "] where message.hasPrefix(prefix) {
            message = "invalid TOML: " + message.dropFirst(prefix.count)
        }
        if message.contains("redefine existing table") {
            message += " (each [pools.NAME] may appear only once)"
        }
        return message
    }

    /// TOMLKit hands keys over as C strings, so a key with a NUL in it comes back cut short and then
    /// finds no value: such keys are reported, never silently dropped.
    private static func convert(_ table: TOMLTable, path: [String], unreadable: inout [UnreadableKey]) -> ConfigTable {
        var entries: [(key: String, value: ConfigValue)] = []
        var seen = Set<String>()
        for key in table.keys {
            guard seen.insert(key).inserted, let value = table[key] else {
                unreadable.append(UnreadableKey(table: path, key: key))
                continue
            }
            entries.append((key, convert(value, path: path + [key], unreadable: &unreadable)))
        }
        return ConfigTable(entries)
    }

    private static func convert(_ value: TOMLValueConvertible, path: [String], unreadable: inout [UnreadableKey]) -> ConfigValue {
        switch value.type {
        case .table: return .table(convert(value.table!, path: path, unreadable: &unreadable))
        case .array: return .array(value.array!.map { convert($0, path: path, unreadable: &unreadable) })
        case .string: return .string(value.string!)
        case .int: return .integer(value.int!)
        case .double: return .float(value.double!)
        case .bool: return .boolean(value.bool!)
        case .date: return .other(typeName: "date")
        case .time: return .other(typeName: "time")
        case .dateTime: return .other(typeName: "date-time")
        }
    }
}
