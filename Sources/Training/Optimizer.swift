// The update rule of every weight (dense layers and input rows) and its constants.

/// The update rule: "leaky AdaGrad", per coordinate on the dense layers and per row on the
/// input table (one accumulator per row, fed the row gradient's mean square):
///     v <- beta * v + g^2 ;  w <- w - lr * g / (sqrt(v) + eps)
/// Why: a perpetual trainer keeps its learning rate fixed, and fixed-rate plain SGD lost about
/// one accuracy point to fastText's rate decaying to zero (docs/design.md). AdaGrad's
/// per-coordinate steps win it back, but plain AdaGrad's steps decay to zero as its sums
/// grow, which would freeze a model that must follow drifting data. With beta < 1 the sum
/// forgets: early on (and for rarely seen rows, i.e. new words) it behaves like AdaGrad;
/// after ~1/(1-beta) updates of a coordinate its step settles at about lr * sqrt(1-beta),
/// never zero. The steps do not depend on the gradient's scale, which also makes the
/// zero-initialised input rows start learning at once. Measured on the git stream
/// (TrainSpeedProbe: 27.5k train / 3k held-out, dim 100, bigrams, 5 passes, lr 0.1): plain
/// fixed-rate SGD (a probe switch, removed since) 0.363 held-out accuracy, leaky AdaGrad
/// 0.573 (both at 64-example mini-batches); with cache-sized mini-batches and 2 threads
/// 0.643, with char 3..5-grams 0.676, hidden 256 + dropout 0.2 0.635. beta 0.9999 = a memory of ~10k updates per row.
///
/// With a hidden layer, the dense layers take steps of lr / sqrt(fan-in) (`fanInScale`): a
/// scale-free step moves every weight of a unit by about lr, so the unit's output moves with
/// the number of inputs it sums; without the factor a hidden layer of 256 diverged at
/// fastText's usual lr 0.5 (one pass over the git stream in time order, 27k examples, 3k
/// held out, dim 100, bigrams: 0.185 held-out accuracy; with it 0.589; unscaled at lr 0.1:
/// 0.572). The linear model's output layer is not scaled: it helped when the same data is
/// seen many times (5 passes, char 3..6-grams: 0.683 -> 0.706) but hurt the one-pass,
/// streaming regime a perpetual trainer lives in (demo flags, lr 0.2: accuracy 0.591 ->
/// 0.450, macro-F1 0.42 -> 0.17), because rare labels learn slower. The embedding rows
/// always take lr: their step is already divided by the example's number of features.
enum Optimizer {
    @inline(__always) static func fanInScale(_ fanIn: Int) -> Float { 1 / Float(max(fanIn, 1)).squareRoot() }
    static let eps: Float = 1e-8
}

/// The trainer's speed and accuracy settings that experiments vary (TrainSpeedProbe, the
/// fused-step test); pp-train always trains with the defaults. A value given to the Trainer at
/// creation, not global state: two trainers in one process cannot change each other's steps.
public struct TrainerTuning: Sendable {
    /// Leaky AdaGrad's forgetting factor (Optimizer): a memory of ~1/(1-beta) updates.
    public var beta: Float = 0.9999
    /// Bytes of input rows per mini-batch (a fraction of a 512 KiB L2). The mini-batch is
    /// sized so that the rows it reads (gather) stay in cache for its scatter: the sparse part
    /// is bound by memory latency, and re-missing every row on the way back costs far more
    /// than smaller GEMMs. Small mini-batches also mean more (adaptive) steps per pass, which
    /// helped accuracy (git stream, 2 passes, bigrams: 0.35 at 64 examples, 0.51 at 1-2).
    public var cacheBudget = 64 << 10
    /// With a hidden layer the GEMMs dominate and need batches (PERF-NOTES: ~5x cheaper per
    /// example at 64 than at 1).
    public var hiddenMinBatch = 16
    /// Rows the gather asks for ahead of the one it adds (RowTable.prefetch).
    public var prefetchAhead = 4
    /// Largest linear-model mini-batch that takes `Worker.linearFusedStep` instead of the GEMMs.
    public var fusedMaxBatch = 8

    public init() {}
}
