package dev.moe.expert.api;

import com.google.protobuf.UnsafeByteOperations;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.sparsity.SparsityThresholds;
import dev.moe.core.tensor.HiddenStatesCodec;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.expert.ExpertServerProperties;
import dev.moe.expert.metrics.ExpertMetrics;
import dev.moe.expert.shard.ExpertCallStats;
import dev.moe.expert.shard.ExpertComputer;
import dev.moe.expert.shard.ExpertShard;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.common.v1.HiddenStates;
import dev.moe.proto.expert.v1.ComputeExpertsRequest;
import dev.moe.proto.expert.v1.ComputeExpertsResponse;
import dev.moe.proto.expert.v1.DescribeShardRequest;
import dev.moe.proto.expert.v1.DescribeShardResponse;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import dev.moe.proto.expert.v1.ExpertStats;
import dev.moe.proto.expert.v1.GetStatsRequest;
import dev.moe.proto.expert.v1.GetStatsResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.Arrays;
import java.util.stream.Collectors;
import org.springframework.stereotype.Service;

/** gRPC face of an expert server: validates each call completely, then runs the hosted experts. */
@Service
public class ExpertGrpcService extends ExpertServiceGrpc.ExpertServiceImplBase {
    private final ExpertShard shard;
    private final ExpertComputer computer;
    private final ExpertServerProperties properties;
    private final ExpertCallStats stats;
    private final ExpertMetrics metrics;
    private final DescribeShardResponse description;

    public ExpertGrpcService(ExpertShard shard, ExpertComputer computer, ExpertServerProperties properties,
                             ExpertCallStats stats, ExpertMetrics metrics) {
        this.shard = shard;
        this.stats = stats;
        this.metrics = metrics;
        this.computer = computer;
        this.properties = properties;
        MoeConfig config = shard.config();
        DescribeShardResponse.Builder d = DescribeShardResponse.newBuilder()
                .setServerId(properties.serverId())
                .setModelFingerprint(shard.fingerprint())
                .setModelType(config.family().modelType)
                .setHiddenSize(config.hiddenSize())
                .setNumExperts(config.numExperts())
                .setWeightType(shard.weightType().name())
                .setWeightBytes(shard.weightBytes())
                .setSparsityEnabled(shard.sparsityEnabled());
        Arrays.stream(shard.hostedExperts()).forEach(d::addExpertIds);
        config.moeLayers().forEach(d::addMoeLayers);
        this.description = d.build();
    }

    @Override
    public void describeShard(DescribeShardRequest request, StreamObserver<DescribeShardResponse> responseObserver) {
        responseObserver.onNext(description);
        responseObserver.onCompleted();
    }

    @Override
    public void getStats(GetStatsRequest request, StreamObserver<GetStatsResponse> responseObserver) {
        GetStatsResponse.Builder response = GetStatsResponse.newBuilder()
                .setCalls(stats.calls()).setTokens(stats.tokens()).setAssignments(stats.assignments());
        for (int id : shard.hostedExperts()) {
            ExpertCallStats.ExpertLoad load = stats.expert(id);
            response.addExperts(ExpertStats.newBuilder().setExpertId(id).setTokens(load.tokens())
                    .setGateUpSparsity(load.gateUpSparsity()).setDownSparsity(load.downSparsity())
                    .setSparseRuns(load.sparseRuns()).setDenseRuns(load.denseRuns()));
        }
        responseObserver.onNext(response.build());
        responseObserver.onCompleted();
    }

    @Override
    public void computeExperts(ComputeExpertsRequest request, StreamObserver<ComputeExpertsResponse> responseObserver) {
        ComputeExpertsResponse response;
        metrics.callStarted();
        try {
            response = compute(request);
        } catch (StatusRuntimeException e) {
            responseObserver.onError(e);
            return;
        } finally {
            metrics.callEnded();
        }
        responseObserver.onNext(response);
        responseObserver.onCompleted();
    }

    private ComputeExpertsResponse compute(ComputeExpertsRequest request) {
        MoeConfig config = shard.config();
        if (!request.getModelFingerprint().equals(shard.fingerprint())) {
            throw Status.FAILED_PRECONDITION.withDescription("model_fingerprint '" + request.getModelFingerprint()
                    + "' differs from this server's '" + shard.fingerprint() + "': router and expert server loaded"
                    + " different checkpoints").asRuntimeException();
        }
        int layer = request.getLayer();
        if (!config.isMoeLayer(layer)) {
            throw invalid("layer " + Integer.toUnsignedString(layer) + " has no MoE block (MoE layers: "
                    + config.moeLayers() + ")");
        }
        if (!request.hasHiddenStates()) {
            throw invalid("hidden_states is not set");
        }
        HiddenStates hs = request.getHiddenStates();
        int numTokens = hs.getNumTokens();
        int hidden = config.hiddenSize();
        float[] x = HiddenStatesPayloads.decode(hs, hidden, properties.maxTokensPerCall(), "this expert server");
        if (request.getExpertsPerTokenCount() != numTokens) {
            throw invalid("experts_per_token has " + request.getExpertsPerTokenCount() + " entries for " + numTokens
                    + " tokens");
        }
        int[] expertsPerToken = new int[numTokens];
        long total = 0;
        for (int t = 0; t < numTokens; t++) {
            expertsPerToken[t] = request.getExpertsPerToken(t);
            if (expertsPerToken[t] < 1 || expertsPerToken[t] > config.numExperts()) {
                throw invalid("experts_per_token[" + t + "] = " + Integer.toUnsignedString(expertsPerToken[t])
                        + " is not in [1, " + config.numExperts() + "]");
            }
            total += expertsPerToken[t];
        }
        if (request.getExpertIdsCount() != total || request.getRoutingWeightsCount() != total) {
            throw invalid("expert_ids has " + request.getExpertIdsCount() + " and routing_weights "
                    + request.getRoutingWeightsCount() + " entries; sum(experts_per_token) is " + total);
        }
        int[] expertIds = new int[(int) total];
        float[] weights = new float[(int) total];
        PackedExpert[] experts = new PackedExpert[(int) total];
        SparsityThresholds[] thresholds = new SparsityThresholds[(int) total];
        for (int t = 0, a = 0; t < numTokens; t++) {
            for (int j = 0; j < expertsPerToken[t]; j++, a++) {
                int id = request.getExpertIds(a);
                experts[a] = shard.expert(layer, id);
                thresholds[a] = shard.thresholds(layer, id);
                if (experts[a] == null) {
                    throw invalid("expert " + Integer.toUnsignedString(id) + " (token " + t + ", layer " + layer
                            + ") is not hosted by " + properties.serverId() + " (hosts "
                            + Arrays.stream(shard.hostedExperts()).mapToObj(Integer::toString)
                            .collect(Collectors.joining(",")) + ")");
                }
                for (int p = a - j; p < a; p++) {
                    if (expertIds[p] == id) {
                        throw invalid("expert " + id + " is listed twice for token " + t);
                    }
                }
                expertIds[a] = id;
                weights[a] = request.getRoutingWeights(a);
                if (!Float.isFinite(weights[a])) {
                    throw invalid("routing_weights[" + a + "] is " + weights[a]);
                }
            }
        }
        long start = System.nanoTime();
        ExpertComputer.Result result = computer.compute(experts, thresholds, x, numTokens, hidden, expertsPerToken,
                expertIds, weights);
        metrics.computed(layer, numTokens, result, System.nanoTime() - start);
        stats.record(numTokens, expertIds.length, result, hidden, config.moeIntermediateSize());
        float[] partial = result.partial();
        int bad = HiddenStatesCodec.firstNonFinite(partial);
        if (bad >= 0) {
            int t = bad / hidden;
            int from = 0;
            for (int u = 0; u < t; u++) {
                from += expertsPerToken[u];
            }
            throw HiddenStatesPayloads.overflow(x, hidden, t, "the experts "
                    + Arrays.toString(Arrays.copyOfRange(expertIds, from, from + expertsPerToken[t])) + " of layer "
                    + layer + " on " + properties.serverId());
        }
        return ComputeExpertsResponse.newBuilder()
                .setNumTokens(numTokens)
                .setHiddenSize(hidden)
                .setPartialOutput(UnsafeByteOperations.unsafeWrap(
                        HiddenStatesCodec.encode(partial, 0, partial.length, WireType.FLOAT32)))
                .build();
    }

    private static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }
}
