/// Names close to a mistyped one, for "did you mean" advice (commands, options, configuration keys).
public enum NearNames {
    /// Whether `typed` may be a slip for `name`: the start of it, or one edit away (two for names longer than four).
    public static func isNear(_ typed: String, _ name: String) -> Bool {
        if typed.count >= 2 && name.hasPrefix(typed) { return true }
        return editDistance(typed, name) <= (name.count <= 4 ? 1 : 2)
    }

    /// The names of `names` that `typed` may be a slip for, nearest first.
    public static func near(_ typed: String, in names: [String]) -> [String] {
        names.filter { isNear(typed, $0) }.sorted { editDistance(typed, $0) < editDistance(typed, $1) }
    }

    /// Edits (insertions, deletions, substitutions, swaps of neighbours) that turn `a` into `b`: the optimal string
    /// alignment distance, by characters, so that `sned` is one slip away from `send`.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in stride(from: 1, through: a.count, by: 1) {
            for j in stride(from: 1, through: b.count, by: 1) {
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1) }
            }
        }
        return table[a.count][b.count]
    }
}
