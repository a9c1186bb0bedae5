package dev.moe.expert;

import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.placement.ExpertPlacement;
import java.nio.file.Path;
import java.time.Duration;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * Settings of an expert server ({@code moe.expert.*}).
 *
 * @param model       checkpoint directory (config.json + safetensors)
 * @param serverId    id reported to the router; defaults to {@code expert-<serverIndex>}
 * @param serverIndex this server's index among {@code numServers} (a StatefulSet ordinal)
 * @param numServers  how many servers share the experts
 * @param placement   how experts are split: contiguous ranges or strided
 * @param experts     explicit expert list such as {@code 0-7,12}; overrides serverIndex/numServers
 * @param maxTokensPerCall largest num_tokens one ComputeExperts call may carry
 * @param weights     how weights are stored: F32, BF16 (default) or INT8 (blocks of 32, one scale each)
 * @param sparsity    SCAP thresholds file written by {@code bin/moe calibrate}; none: dense and exact
 * @param sparseCrossover union density of active input channels above which a projection runs dense anyway
 * @param kernelThreads threads of the kernel pool (default: every core)
 * @param podIndex    a StatefulSet pod's ordinal ({@code apps.kubernetes.io/pod-index}); when set, the shard is
 *                    {@code podIndex mod numServers}, so pods {@code i}, {@code i + n}, … are replicas of shard i
 * @param metrics     metrics settings
 * @param layout      how expert weights are laid out: PANELS (64-output panels) or ROWS (each input channel's output
 *                    row contiguous, so a pruned channel skips one contiguous run); default: {@link #layoutFor}
 * @param warmup      how long at least the kernels run on small random experts before the server listens, so that
 *                    its first calls do not run them interpreted (the first call of a cold JVM is hundreds of times
 *                    slower); it also makes {@link dev.moe.core.kernels.KernelWarmup#MIN_CALLS} calls, however long
 *                    that takes (up to a minute more); default 2s, 0 to skip; paid once per JVM and weight
 *                    type/layout
 */
@ConfigurationProperties("moe.expert")
public record ExpertServerProperties(Path model, String serverId, Integer serverIndex, Integer numServers,
                                     ExpertPlacement.Strategy placement, String experts, Integer maxTokensPerCall,
                                     WeightType weights, Path sparsity, Double sparseCrossover, Integer kernelThreads,
                                     Integer podIndex, Metrics metrics, PanelMatrix.Layout layout,
                                     Duration warmup) {

    /**
     * Metrics ({@code moe.expert.metrics.*}).
     *
     * @param layerTag tag the per-expert token counter with the MoE layer (series × layers; off by default)
     */
    public record Metrics(boolean layerTag) {
    }

    public ExpertServerProperties {
        numServers = numServers == null ? 1 : numServers;
        if (podIndex != null) {
            if (podIndex < 0 || numServers < 1) {
                throw new IllegalArgumentException("moe.expert.pod-index " + podIndex + " must be >= 0 and"
                        + " moe.expert.num-servers >= 1");
            }
            serverIndex = podIndex % numServers;
        }
        serverIndex = serverIndex == null ? 0 : serverIndex;
        placement = placement == null ? ExpertPlacement.Strategy.CONTIGUOUS : placement;
        serverId = serverId == null || serverId.isBlank() ? "expert-" + serverIndex : serverId;
        maxTokensPerCall = maxTokensPerCall == null ? 16384 : maxTokensPerCall;
        weights = weights == null ? WeightType.BF16 : weights;
        // layout and sparseCrossover stay null unless set: their defaults depend on the thresholds file's target
        kernelThreads = kernelThreads == null ? Runtime.getRuntime().availableProcessors() : kernelThreads;
        metrics = metrics == null ? new Metrics(false) : metrics;
        warmup = warmup == null ? Duration.ofSeconds(2) : warmup;
        if (warmup.isNegative()) {
            throw new IllegalArgumentException("moe.expert.warmup " + warmup + " must not be negative (0 skips it)");
        }
    }

    /**
     * The layout this server packs its experts in: {@link #layout()} when set; PANELS without thresholds; with them,
     * ROWS once the thresholds' target sparsity reaches {@link #minRowsSparsity} of the weight type, where a sparse
     * token on ROWS overtakes a dense one on PANELS, else PANELS (whose crossover then keeps the experts dense).
     *
     * @param targetSparsity the thresholds file's target sparsity, null without one
     */
    public PanelMatrix.Layout layoutFor(Double targetSparsity) {
        if (layout != null) {
            return layout;
        }
        return targetSparsity != null && targetSparsity >= minRowsSparsity(weights)
                ? PanelMatrix.Layout.ROWS : PanelMatrix.Layout.PANELS;
    }

    /**
     * Target sparsity from which ROWS beats PANELS for one token, measured with {@code bin/moe bench layer --synthetic
     * qwen3-30b-a3b --sparsity 0,0.5,0.7 --batch 1} on the 2-core reference machine (README, "Measured"; experts'
     * time) while its memory was fast (75-82 GB/s): int8 PANELS dense 0.65 ms against ROWS sparse 0.74 ms at 0.5 and
     * 0.49 ms at 0.7; bf16 PANELS dense 1.05 ms against ROWS 1.20 ms dense and 0.88 ms at 0.5; f32 ROWS is as fast as
     * PANELS dense already. With slow memory (48-52 GB/s) ROWS pays earlier (int8 0.84 ms sparse at 0.5 against 0.90
     * dense); the defaults follow fast memory, where dense reads gain most over scattered sparse rows. bf16 from 0.4:
     * below, a token's union density is above ROWS' crossover (0.65) or so close to it that ROWS runs it no faster
     * than PANELS dense (ROWS dense is 0.91-0.93x of PANELS dense).
     */
    public static double minRowsSparsity(WeightType weights) {
        return switch (weights) {
            case F32 -> 0.0;
            case BF16 -> 0.4;
            case INT8 -> 0.6;
        };
    }

    /** {@link #sparseCrossover()} when set, else the measured default of the weight type on {@code layout}. */
    public double sparseCrossoverFor(PanelMatrix.Layout layout) {
        return sparseCrossover != null ? sparseCrossover : defaultSparseCrossover(weights, layout);
    }

    /** {@link #defaultSparseCrossover(WeightType, PanelMatrix.Layout)} on {@link PanelMatrix.Layout#PANELS}. */
    public static double defaultSparseCrossover(WeightType weights) {
        return defaultSparseCrossover(weights, PanelMatrix.Layout.PANELS);
    }

    /**
     * Union density of active input channels below which the sparse path beats the dense one, measured with
     * {@code bin/moe bench kernel --sparsity 0,0.3,...,0.7} on the 2-core reference machine (Qwen3 expert, one token, 2
     * threads; README, "Measured"). On ROWS a sparse token reads whole rows and pays early: f32 1.18x the dense
     * kernel at density 0.8, bf16 1.13x at 0.6 (0.99x at 0.7), int8 1.03x at 0.6 (0.96x at 0.7: widening bytes
     * costs more instructions per byte, so fewer weight lines are in flight). On PANELS an active row is a 64-weight
     * run scattered in a panel: f32 pays below about 0.35 (1.27-1.60x at 0.3), bf16 only below about 0.25 (at 0.3:
     * 1.15-1.22x while the memory is slow, 0.81-0.88x while it is fast; at 0.2 1.81-1.87x either way), int8 not at 0.3.
     */
    public static double defaultSparseCrossover(WeightType weights, PanelMatrix.Layout layout) {
        if (layout == PanelMatrix.Layout.ROWS) {
            return switch (weights) {
                case F32 -> 0.85;
                case BF16 -> 0.65;
                case INT8 -> 0.6;
            };
        }
        return switch (weights) {
            case F32 -> 0.35;
            case BF16 -> 0.25;
            case INT8 -> 0.1;
        };
    }

    /** The experts this server hosts, ascending. */
    public int[] hostedExperts(int numExperts) {
        if (experts != null && !experts.isBlank()) {
            return ExpertPlacement.parse(experts, numExperts);
        }
        return ExpertPlacement.experts(placement, numExperts, serverIndex, numServers);
    }
}
