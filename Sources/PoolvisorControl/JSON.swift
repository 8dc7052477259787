import PoolvisorCore

// A small JSON value type for the control-socket protocol (JSON lines) and `poolvisor status --json`.
// Standard library only. Output is deterministic: object members are written in insertion order,
// compactly and with one fixed escaping, so the same value always serializes to the same bytes.

/// A JSON value.
///
/// Build values with literals (`["pool": "web", "replicas": 3, "ready": true, "status": nil]`) or the
/// cases, read them with the accessors (`json["pool"]?.string`), write them with ``serialized`` or
/// ``pretty(indent:)`` and read text with `JSON.parse(_:maximumDepth:)`.
///
/// Equality is structural and exact: `.int(1)` and `.double(1)` differ, objects with the same members
/// in a different order differ (they serialize differently), and `.double(.nan)` equals nothing.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer. Parsing gives `.int` for every number without fraction or exponent that fits.
    case int(Int64)
    /// A floating-point number. NaN and the infinities have no JSON form and serialize as `null`.
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

// MARK: - Objects

/// The members of a JSON object, in insertion order (which is also the order they serialize in).
///
/// Setting a key that is already present replaces its value in place; setting `nil` removes it.
/// Note that `object["k"] = nil` removes the member: to store a JSON null write `object["k"] = .null`.
public struct JSONObject: Sendable, Equatable {
    private var storedKeys: [String] = []
    private var storedValues: [JSON] = []
    /// Key → position in `storedKeys`, kept only for objects with more than `linearSearchLimit` keys:
    /// smaller ones (nearly all) are searched faster than hashed.
    private var positions: [String: Int]?
    private static let linearSearchLimit = 8

    /// An empty object.
    public init() {}

    /// The members in order, from a caller that knows its keys are distinct (a status report with a
    /// thousand replicas): nothing is checked and no index is built, so lookups in it search in order.
    public init(distinctKeys members: KeyValuePairs<String, JSON>) {
        storedKeys.reserveCapacity(members.count)
        storedValues.reserveCapacity(members.count)
        for (key, value) in members {
            storedKeys.append(key)
            storedValues.append(value)
        }
    }

    /// The keys in order.
    public var keys: [String] { storedKeys }
    /// The values, in the order of ``keys``.
    public var values: [JSON] { storedValues }
    /// The number of members.
    public var count: Int { storedKeys.count }
    public var isEmpty: Bool { storedKeys.isEmpty }

    /// The value for `key`; setting replaces it in place or appends a new member, `nil` removes it.
    public subscript(key: String) -> JSON? {
        get { position(of: key).map { storedValues[$0] } }
        set {
            if let newValue {
                if let position = position(of: key) {
                    storedValues[position] = newValue
                    return
                }
                storedKeys.append(key)
                storedValues.append(newValue)
                if positions != nil {
                    positions![key] = storedKeys.count - 1
                } else if storedKeys.count > Self.linearSearchLimit {
                    positions = Dictionary(uniqueKeysWithValues: zip(storedKeys, storedKeys.indices))
                }
            } else if let position = position(of: key) {
                storedKeys.remove(at: position)
                storedValues.remove(at: position)
                if positions != nil {
                    positions![key] = nil
                    for later in position..<storedKeys.count { positions![storedKeys[later]] = later }
                }
            }
        }
    }

    private func position(of key: String) -> Int? {
        if let positions { return positions[key] }
        for position in 0..<storedKeys.count where storedKeys[position] == key { return position }
        return nil
    }

    /// Same keys in the same order with equal values (`positions` follows from `storedKeys`).
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.storedKeys == b.storedKeys && a.storedValues == b.storedValues
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    /// A repeated key keeps its first position and takes its last value (parsing rejects one).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        for (key, value) in elements { self[key] = value }
    }
}

extension JSONObject: Sequence {
    /// Iterates over the members as `(key, value)` pairs, in order.
    public struct Iterator: IteratorProtocol {
        fileprivate let object: JSONObject
        fileprivate var position = 0

        public mutating func next() -> (key: String, value: JSON)? {
            guard position < object.storedKeys.count else { return nil }
            defer { position += 1 }
            return (object.storedKeys[position], object.storedValues[position])
        }
    }

    public func makeIterator() -> Iterator { Iterator(object: self) }
    public var underestimatedCount: Int { count }
}

extension JSONObject: CustomStringConvertible {
    /// The compact serialization.
    public var description: String { JSON.object(self).serialized }
}

// MARK: - Literals

extension JSON: ExpressibleByNilLiteral {
    /// `nil` is `.null`. (Where a `JSON?` is expected, `nil` is still `Optional.none`.)
    public init(nilLiteral: ()) { self = .null }
}

extension JSON: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension JSON: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension JSON: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSON: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
}

extension JSON: ExpressibleByDictionaryLiteral {
    /// A repeated key keeps its first position and takes its last value (parsing rejects one).
    public init(dictionaryLiteral elements: (String, JSON)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}

// MARK: - Accessors

extension JSON {
    /// The member named `key` if this is an object that has it, else nil.
    public subscript(key: String) -> JSON? {
        if case .object(let object) = self { object[key] } else { nil }
    }

    /// The element at `index` if this is an array and `index` is in range, else nil.
    public subscript(index: Int) -> JSON? {
        if case .array(let elements) = self, elements.indices.contains(index) { elements[index] } else { nil }
    }

    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The value of an `.int`, or of a `.double` that is integral and within Int64's range.
    public var int: Int64? {
        switch self {
        case .int(let value): value
        case .double(let value): Int64(exactly: value)
        default: nil
        }
    }

    /// The value of a `.double`, or of an `.int` (rounded to the nearest Double beyond ±2^53).
    public var double: Double? {
        switch self {
        case .double(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }

    public var bool: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    public var array: [JSON]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    public var object: JSONObject? {
        if case .object(let object) = self { object } else { nil }
    }

    public var isNull: Bool {
        if case .null = self { true } else { false }
    }
}
