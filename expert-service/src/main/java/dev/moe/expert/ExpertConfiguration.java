package dev.moe.expert;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.KernelWarmup;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.VectorPanelKernels;
import dev.moe.core.sparsity.SparsityProfile;
import dev.moe.expert.metrics.ExpertMetrics;
import dev.moe.expert.shard.ExpertCallStats;
import dev.moe.expert.shard.ExpertComputer;
import dev.moe.expert.shard.ExpertShard;
import io.grpc.Status;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.Arrays;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.grpc.server.exception.GrpcExceptionHandler;

/** Loads this server's shard of experts before the gRPC server starts listening. */
@Configuration(proxyBeanMethods = false)
public class ExpertConfiguration {
    private static final Logger log = LoggerFactory.getLogger(ExpertConfiguration.class);

    @Bean(destroyMethod = "close")
    Checkpoint checkpoint(ExpertServerProperties properties) {
        if (properties.model() == null) {
            throw new CheckpointException("moe.expert.model is not set: pass --moe.expert.model=/path/to/checkpoint");
        }
        try {
            return Checkpoint.open(properties.model());
        } catch (CheckpointException e) { // name the setting: the message is shared with bin/moe's --model
            throw new CheckpointException("moe.expert.model: " + e.getMessage(), e);
        }
    }

    @Bean
    ExpertShard expertShard(Checkpoint checkpoint, ExpertServerProperties properties) {
        MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
        int[] hosted;
        try {
            hosted = properties.hostedExperts(config.numExperts());
        } catch (IllegalArgumentException e) {
            throw new CheckpointException("moe.expert placement: " + e.getMessage(), e);
        }
        log.info("{}: loading experts {} of {} ({}, {} MoE layers) from {}", properties.serverId(),
                Arrays.toString(hosted), config.numExperts(), config.family().modelType, config.moeLayers().size(),
                checkpoint.directory());
        ExpertShard.ThresholdSource thresholds = ExpertShard.ThresholdSource.DENSE;
        Double targetSparsity = null;
        if (properties.sparsity() != null) {
            SparsityProfile profile = SparsityProfile.read(properties.sparsity());
            profile.requireFingerprint(checkpoint.fingerprint());
            profile.requireFits(config);
            thresholds = profile::thresholds;
            targetSparsity = profile.targetSparsity();
            log.info("{}: SCAP thresholds from {} (target sparsity {})", properties.serverId(), properties.sparsity(),
                    profile.targetSparsity());
        }
        PanelMatrix.Layout layout = properties.layoutFor(targetSparsity);
        if (properties.layout() == null && targetSparsity != null && layout == PanelMatrix.Layout.PANELS) {
            log.info("{}: {} experts stay in PANELS: below a target sparsity of {} a sparse token on ROWS is slower"
                            + " than a dense one on PANELS (set moe.expert.layout=rows to override)",
                    properties.serverId(), properties.weights(), ExpertServerProperties.minRowsSparsity(
                            properties.weights()));
        }
        ExpertShard shard = ExpertShard.load(checkpoint, config, hosted, properties.weights(), layout,
                thresholds, line -> log.info("{}: {}", properties.serverId(), line));
        log.info("{}: experts loaded, model fingerprint {}", properties.serverId(), shard.fingerprint());
        return shard;
    }

    @Bean
    ExpertCallStats expertCallStats(ExpertShard shard) {
        return new ExpertCallStats(shard.config().numExperts());
    }

    @Bean(destroyMethod = "close")
    KernelPool kernelPool(ExpertServerProperties properties) {
        return new KernelPool(properties.kernelThreads());
    }

    @Bean
    ExpertMetrics expertMetrics(MeterRegistry registry, ExpertShard shard, KernelPool pool,
                                ExpertServerProperties properties) {
        MoeConfig config = shard.config();
        return new ExpertMetrics(registry, config.numExperts(), shard.hostedExperts(), config.moeLayers(),
                properties.metrics().layerTag(), config.hiddenSize(), config.moeIntermediateSize(),
                shard.weightType(), shard.weightBytes(), pool::waitingCallers);
    }

    /**
     * Runs the kernels of this server's weight type and layout (and its sparse path, with thresholds) before the gRPC
     * server is created, which depends on it: a pod is not ready until its kernels are compiled.
     */
    @Bean
    KernelWarmup.Result kernelWarmup(KernelPool pool, ExpertShard shard, ExpertServerProperties properties) {
        if (properties.warmup().isZero()) {
            return KernelWarmup.Result.SKIPPED;
        }
        if (KernelWarmup.isWarm(shard.weightType(), shard.layout(), shard.sparsityEnabled())) {
            log.info("{}: {} {} kernels already warm in this JVM", properties.serverId(), shard.weightType(),
                    shard.layout());
            return KernelWarmup.Result.SKIPPED;
        }
        log.info("{}: warming up the {} {} kernels{} for at least {} s and {} calls before serving",
                properties.serverId(), shard.weightType(), shard.layout(),
                shard.sparsityEnabled() ? " (dense and sparse)" : "",
                String.format(Locale.ROOT, "%.1f", properties.warmup().toMillis() / 1000.0), KernelWarmup.MIN_CALLS);
        KernelWarmup.Result result = KernelWarmup.once(shard.weightType(), shard.layout(),
                shard.sparsityEnabled(), pool, properties.warmup());
        if (result.cutShort()) {
            log.warn("{}: kernel warm-up stopped after {} small FFN calls in {} s, short of {}: this machine is slow or"
                            + " starved of CPU, so the kernels may still be compiling and the first requests slow"
                            + " (give the pod more CPU or raise moe.expert.warmup)", properties.serverId(),
                    result.calls(), String.format(Locale.ROOT, "%.1f", result.seconds()), KernelWarmup.MIN_CALLS);
        } else {
            log.info("{}: kernels warm: {} small FFN calls in {} s", properties.serverId(), result.calls(),
                    String.format(Locale.ROOT, "%.1f", result.seconds()));
        }
        return result;
    }

    @Bean
    ExpertComputer expertComputer(KernelPool pool, ExpertServerProperties properties, ExpertShard shard,
                                  KernelWarmup.Result kernelWarmup) {
        return new ExpertComputer(new ExpertFfn(VectorPanelKernels.INSTANCE, pool,
                properties.sparseCrossoverFor(shard.layout())));
    }

    /**
     * Anything a handler did not map itself is INTERNAL, logged: bad input is rejected where it is read, with
     * INVALID_ARGUMENT naming the field, so an exception reaching here (an IllegalArgumentException included) is a bug
     * on this side, not the client's.
     */
    @Bean
    GrpcExceptionHandler expertExceptionHandler() {
        return exception -> {
            log.error("unexpected failure in an expert call", exception);
            return Status.INTERNAL.withDescription("expert server failure: " + exception).asException();
        };
    }
}
