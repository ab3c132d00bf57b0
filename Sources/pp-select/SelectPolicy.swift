// The "select" section of ROOT/policy.json (docs/formats.md, "policy.json", "select"): whether
// pp-select guards against poisoned lineages, and how it treats an incomplete one. The file
// is written by people and shared by the tools, one section per tool; pp-select reads only
// "select" and ignores the others. A missing file or section means the defaults; an unknown
// key or a bad value in "select" is an error naming the file and the key (a typo must not
// silently leave a default in force). Not here: the guard itself (PoisonGuard.swift).

import Foundation
import Shared
import TextModel

struct SelectPolicy: Equatable {
    /// Refuse poisoned lineages and replace a poisoned deployed model. false only to measure
    /// what happens without the guard (tools/spoil-replay.py's "guards off").
    var guardEnabled = true
    /// An incomplete lineage (a parent file is gone): "bound" accepts it when no poisoned shard
    /// can hide in the missing part (ingested after the missing parent was written);
    /// "refuse" refuses it whenever any shard at all is poisoned.
    var incompleteLineage = "bound"

    static let keys = ["guard", "incomplete_lineage"]

    static func load(root: Root) throws -> SelectPolicy {
        let path = root.path + "/policy.json"
        guard FileIO.exists(path) else { return SelectPolicy() }
        return try parse(try FileIO.readAll(path), path: path)
    }

    static func parse(_ bytes: [UInt8], path: String) throws -> SelectPolicy {
        func bad(_ why: String) -> PPError { PPError("\(path): \(why)", status: .corrupt) }
        let top: JSONValue
        do { top = try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) } catch {
            throw bad("not valid JSON")
        }
        guard case .object(let doc) = top else {
            throw bad("expected a JSON object with one section per tool (\"ingest\", \"train\", \"select\")")
        }
        guard let raw = doc["select"] else { return SelectPolicy() }
        guard case .object(let sec) = raw else { throw bad("select: expected an object") }
        var p = SelectPolicy()
        for (k, v) in sec.sorted(by: { $0.key < $1.key }) {
            switch (k, v) {
            case ("guard", .bool(let b)): p.guardEnabled = b
            case ("guard", _): throw bad("select.guard: expected true or false")
            case ("incomplete_lineage", .string(let s)) where ["bound", "refuse"].contains(s): p.incompleteLineage = s
            case ("incomplete_lineage", _): throw bad("select.incomplete_lineage: expected \"bound\" or \"refuse\"")
            default: throw bad("select.\(k): unknown key (known: \(keys.joined(separator: ", ")))")
            }
        }
        return p
    }

}
