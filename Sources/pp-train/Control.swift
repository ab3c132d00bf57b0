// The knob changes between two knob sets, as a checkpoint records them (control.json itself,
// its format and validation, is TextModel/Control.swift: pp-select's population step writes it too).

import Shared
import TextModel

/// The knob changes between two knob sets, as recorded in checkpoints.
func knobChanges(from old: Knobs, to new: Knobs, step: Int, at: String) -> [KnobChange] {
    var out: [KnobChange] = []
    if old.lr != new.lr { out.append(KnobChange(step: step, knob: "lr", old: "\(old.lr)", new: "\(new.lr)", at: at)) }
    if old.dropout != new.dropout { out.append(KnobChange(step: step, knob: "dropout", old: "\(old.dropout)", new: "\(new.dropout)", at: at)) }
    if old.average != new.average { out.append(KnobChange(step: step, knob: "average", old: "\(old.average)", new: "\(new.average)", at: at)) }
    if old.pause != new.pause { out.append(KnobChange(step: step, knob: "pause", old: "\(old.pause)", new: "\(new.pause)", at: at)) }
    return out
}
