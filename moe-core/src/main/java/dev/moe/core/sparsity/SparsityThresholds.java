package dev.moe.core.sparsity;

/**
 * SCAP thresholds of one (layer, expert): a value v entering a projection is pruned iff {@code |v − mode| <= threshold}.
 * {@code gateUp} covers the input x shared by gate_proj and up_proj; {@code down} covers
 * h = silu(gate·x) ⊙ up·x entering down_proj. With mode-centering the kept values enter as v − mode and the
 * projection adds {@code W·(mode·1)} back as a bias, so only the pruned part is approximated.
 */
public record SparsityThresholds(float gateUpThreshold, float gateUpMode, float downThreshold, float downMode) {
}
