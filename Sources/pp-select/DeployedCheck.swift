// The deployed checkpoint is verified at every pp-select run (issue 15, item 5): a file that
// rotted or was overwritten after it was deployed is noticed within a day (the timer) instead
// of never. The check reads the whole file and checks its zstd checksum, its magic and its end
// marker (Checkpoint.verifyFile; no model is built). A bad one is rolled back to the newest
// earlier deployment that exists, verifies and has a clean lineage, with a `rollback`
// decision saying why (exit 1: a person should look); with none, a `keep` decision says so
// (exit 65) and selection goes on, so a good new candidate can still replace it.

import Shared
import TextModel

extension Selector {
    /// nil when nothing is deployed, its target is missing (guardDeployed's case) or it
    /// verifies. `check` is Checkpoint.verifyFile in the tool (injected for tests).
    func checkDeployed(_ check: (String) throws -> Void) throws -> (DecisionRecord, ExitStatus)? {
        guard let dep = currentDeployed(), FileIO.exists(absolute(dep)) else { return nil }
        let problem: String
        do { try check(absolute(dep)); return nil } catch let e as PPError where e.status == .corrupt || e.status == .noInput {
            problem = e.message
        }
        Log.fail("pp-select", "deployed \(Selector.id(dep)) fails verification: \(problem)")
        var rec = DecisionRecord(at: stamp(), decision: "rollback", reason: "")
        rec.previous = Selector.id(dep); rec.previousPath = dep
        var rejected: [[String: String]] = []
        let why = "deployed \(Selector.id(dep)) fails verification (\(problem))"
        for t in History.rollbackTargets(try History.read(root.selections), current: dep) {
            guard FileIO.exists(absolute(t)) else {
                rejected.append(["checkpoint": Selector.id(t), "reason": "no longer exists", "kind": "missing"]); continue
            }
            if let p = poisonReason(absolute(t)) {
                rejected.append(["checkpoint": Selector.id(t), "reason": p.text, "kind": p.kind]); continue
            }
            do { try check(absolute(t)); try verify(absolute(t)) } catch {
                rejected.append(["checkpoint": Selector.id(t), "reason": (error as? PPError)?.message ?? "\(error)", "kind": "corrupt"])
                continue
            }
            rec.reason = why + "; rolled back to the newest earlier deployment that verifies"
            rec.deployed = Selector.id(t); rec.deployedPath = t
            if !rejected.isEmpty { rec.rejected = rejected }
            return (rec, .partial)
        }
        rec.decision = "keep"
        rec.reason = why + "; no earlier deployment verifies, so the link stays: deploy a good one by hand (pp-select --deploy)"
        rec.deployed = rec.previous; rec.deployedPath = dep
        if !rejected.isEmpty { rec.rejected = rejected }
        return (rec, .corrupt)
    }
}
