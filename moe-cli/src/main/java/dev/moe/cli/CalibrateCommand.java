package dev.moe.cli;

import dev.moe.cli.MoeCli.UserError;
import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.sparsity.ActivationsFile;
import dev.moe.core.sparsity.CalibrationSource;
import dev.moe.core.sparsity.Calibrator;
import dev.moe.core.sparsity.Calibrator.LayerSummary;
import dev.moe.core.sparsity.SparsityProfile;
import dev.moe.core.sparsity.SyntheticActivations;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moe calibrate}: SCAP activation-sparsity thresholds for every (MoE layer, routed expert) of a checkpoint,
 * written as a {@link SparsityProfile} JSON file.
 */
@Command(name = "calibrate", mixinStandardHelpOptions = true,
        description = "Calibrate activation-sparsity thresholds (SCAP) for every routed expert of a checkpoint.")
final class CalibrateCommand implements Callable<Integer> {
    static final int DEFAULT_SYNTHETIC_TOKENS = 4096;
    static final long DEFAULT_SEED = 1;

    @Option(names = "--model", required = true, description = "Checkpoint folder (config.json + safetensors).")
    Path model;

    @Option(names = "--target-sparsity", required = true,
            description = "Fraction of each expert input's values to prune, in [0, 1) (e.g. 0.5).")
    double targetSparsity;

    @Option(names = "--mode-centering",
            description = "Centre the pruning interval on each input distribution's mode instead of 0.")
    boolean modeCentering;

    @Option(names = "--out", required = true, description = "Thresholds file to write (JSON).")
    Path out;

    @Option(names = "--activations", description = "safetensors file of recorded MoE-block inputs: hidden_states"
            + " [tokens, hidden] for every layer, or layerL.input per layer."
            + " Default: synthetic Gaussian hidden states.")
    Path activations;

    @Option(names = "--tokens", description = "Calibration tokens per layer (default: " + DEFAULT_SYNTHETIC_TOKENS
            + " synthetic; every row of --activations).")
    Integer tokens;

    @Option(names = "--seed", description = "Seed of the synthetic hidden states (default: " + DEFAULT_SEED + ").")
    Long seed;

    @Option(names = "--threads", description = "Experts calibrated in parallel (default: the number of cores).")
    Integer threads;

    @Option(names = "--skip-measure", description = "Skip the second pass that counts the achieved sparsity exactly;"
            + " the summary then shows the histograms' estimate.")
    boolean skipMeasure;

    @Override
    public Integer call() throws Exception {
        PrintStream err = System.err;
        if (!(targetSparsity >= 0 && targetSparsity < 1)) {
            throw new UserError("--target-sparsity must be in [0, 1), got " + targetSparsity);
        }
        if (tokens != null && tokens < 1) {
            throw new UserError("--tokens must be >= 1, got " + tokens);
        }
        int workers = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        if (workers < 1) {
            throw new UserError("--threads must be >= 1, got " + workers);
        }
        if (Files.isDirectory(out)) {
            throw new UserError("--out " + out + " is a directory; give a file name such as thresholds.json");
        }
        // Found before calibrating, not after it (a missing folder is created when the file is written).
        Path outDir = out.toAbsolutePath().getParent();
        if (outDir != null && Files.exists(outDir) && (!Files.isDirectory(outDir) || !Files.isWritable(outDir))) {
            throw new UserError("--out " + out + ": " + outDir + (Files.isDirectory(outDir) ? " is not writable"
                    : " is not a directory"));
        }
        if (activations != null && seed != null) {
            err.println("moe: --seed only applies to synthetic inputs; it is ignored with --activations");
        }
        Calibrator.Options options = Calibrator.Options.of(targetSparsity, modeCentering).withThreads(workers)
                .withMeasure(!skipMeasure);
        Calibrator.Result result;
        try (Checkpoint checkpoint = Checkpoint.open(model)) {
            MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
            if (config.moeLayers().isEmpty()) {
                throw new UserError(model + ": the model has no MoE layers (num_hidden_layers "
                        + config.numHiddenLayers() + "), so there are no experts to calibrate");
            }
            try (CalibrationSource source = openSource(config)) {
                long expertBytes = 3L * config.hiddenSize() * config.moeIntermediateSize() * Float.BYTES;
                Progress progress = new Progress("calibrating", err);
                result = Calibrator.calibrate(checkpoint, source, options,
                        (done, total) -> progress.update(done * expertBytes, total * expertBytes));
            }
        } catch (CheckpointException | IllegalArgumentException e) {
            throw new UserError(e.getMessage());
        }
        try {
            result.profile().write(out);
        } catch (java.io.IOException e) {
            throw new UserError("cannot write " + out + ": " + e);
        }
        printSummary(System.out, result);
        return 0;
    }

    private CalibrationSource openSource(MoeConfig config) {
        if (activations != null) {
            return ActivationsFile.open(activations, config.hiddenSize(), config.moeLayers(),
                    tokens != null ? tokens : Integer.MAX_VALUE);
        }
        System.err.println("moe: no --activations given: calibrating on synthetic Gaussian hidden states, which suit"
                + " synthetic checkpoints and tests; for a real model pass hidden states recorded from it");
        return new SyntheticActivations(config.hiddenSize(), tokens != null ? tokens : DEFAULT_SYNTHETIC_TOKENS,
                seed != null ? seed : DEFAULT_SEED);
    }

    private void printSummary(PrintStream o, Calibrator.Result result) {
        SparsityProfile p = result.profile();
        int experts = p.layers().isEmpty() ? 0 : p.layers().values().iterator().next().size();
        int withTokens = result.layers().stream().mapToInt(LayerSummary::expertsWithTokens).sum();
        SparsityProfile.Calibration c = p.calibration();
        o.printf("calibrated %s %s: %d MoE layers x %d experts, target sparsity %.3f, mode centering %s%n",
                p.modelType(), p.modelFingerprint(), p.layers().size(), experts, p.targetSparsity(),
                p.modeCentering() ? "on" : "off");
        o.printf("inputs: %s, %d tokens per layer%s%n", c.source(), c.tokens(),
                c.seed() == null ? "" : ", seed " + c.seed());
        o.printf("%n%-6s %8s %9s %17s %14s %17s %14s%n", "layer", "tokens", "experts", "mean thr gate_up",
                "mean thr down", "sparsity gate_up", "sparsity down");
        for (LayerSummary s : result.layers()) {
            o.printf("%-6d %8d %4d/%-4d %17.5g %14.5g %17.4f %14.4f%n", s.layer(), s.tokens(), s.expertsWithTokens(),
                    experts, s.meanGateUpThreshold(), s.meanDownThreshold(), s.gateUpSparsity(), s.downSparsity());
        }
        o.printf("%nexperts that received tokens: %d of %d (the others prune nothing)%n", withTokens,
                experts * p.layers().size());
        o.printf("mean threshold: gate_up %.5g, down %.5g%n", result.meanGateUpThreshold(), result.meanDownThreshold());
        o.printf("achieved sparsity on the calibration set (%s): gate_up %.4f, down %.4f%n",
                result.measured() ? "counted" : "histogram estimate", result.gateUpSparsity(), result.downSparsity());
        o.printf("wrote %s%n", out);
    }
}
