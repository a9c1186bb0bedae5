package dev.moe.router;

import dev.moe.core.config.MoeConfig;
import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.moe.RouterLayer;
import dev.moe.core.tensor.HiddenStatesCodec;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import dev.moe.proto.router.v1.Routing;
import dev.moe.router.combine.WeightedCombiner;
import dev.moe.router.discovery.ExpertDirectory;
import dev.moe.router.dispatch.DispatchPlan;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import dev.moe.router.dispatch.ExpertDispatcher;
import dev.moe.router.dispatch.ExpertDispatcher.PendingCall;
import dev.moe.router.dispatch.ExpertRoutingTable;
import dev.moe.router.gating.RouterModel;
import dev.moe.router.metrics.RouterMetrics;
import io.grpc.Deadline;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * One MoE block forward, in the order of the transformers code: gate → top-k → dispatch → experts (remote) →
 * combine, with the shared expert computed here while the expert servers work.
 */
public final class ForwardPipeline {
    private final RouterModel model;
    private final ExpertDirectory directory;
    private final ExpertDispatcher dispatcher;
    private final int maxTokensPerRequest;
    private final Duration dispatchTimeout;
    private final RouterMetrics metrics;

    public ForwardPipeline(RouterModel model, ExpertDirectory directory, ExpertDispatcher dispatcher,
                           int maxTokensPerRequest, Duration dispatchTimeout, RouterMetrics metrics) {
        this.model = model;
        this.directory = directory;
        this.dispatcher = dispatcher;
        this.maxTokensPerRequest = maxTokensPerRequest;
        this.dispatchTimeout = dispatchTimeout;
        this.metrics = metrics;
    }

    public int maxTokensPerRequest() {
        return maxTokensPerRequest;
    }

    public ForwardResponse forward(ForwardRequest request) {
        MoeConfig config = model.config();
        int layerIndex = request.getLayer();
        RouterLayer gate = model.layer(layerIndex);
        if (gate == null) {
            String why = Integer.toUnsignedLong(layerIndex) >= config.numHiddenLayers()
                    ? "does not exist (the model has " + config.numHiddenLayers() + " layers)"
                    : "has no MoE block (it is a dense MLP layer)";
            throw Status.INVALID_ARGUMENT.withDescription("layer " + Integer.toUnsignedString(layerIndex) + " " + why
                    + "; MoE layers: " + config.moeLayers()).asRuntimeException();
        }
        if (!request.hasHiddenStates()) {
            throw Status.INVALID_ARGUMENT.withDescription("hidden_states is not set").asRuntimeException();
        }
        WireType wireType = HiddenStatesPayloads.wireType(request.getHiddenStates());
        int hidden = config.hiddenSize();
        float[] x = HiddenStatesPayloads.decode(request.getHiddenStates(), hidden, maxTokensPerRequest, "the router");
        int numTokens = request.getHiddenStates().getNumTokens();

        // router_logits = self.gate(hidden_states); routing_weights, selected_experts = topk(...)
        RoutingDecision routing = model.route(gate, x, numTokens);
        for (int i = 0; i < routing.routingWeights().length; i++) {
            if (!Float.isFinite(routing.routingWeights()[i])) {
                // Finite inputs can still overflow the gate (|x| near Float.MAX_VALUE): the client's data, not ours.
                throw Status.INVALID_ARGUMENT.withDescription("hidden_states of token " + i / routing.topK()
                        + " overflow the router (its gate logits are not finite): values are far outside the range"
                        + " of hidden states").asRuntimeException();
            }
        }
        // Dispatch: one call per server that hosts a chosen expert.
        ExpertRoutingTable table = directory.table();
        List<ServerBatch> batches;
        try {
            batches = DispatchPlan.plan(routing, table, layerIndex);
        } catch (RuntimeException e) {
            // An expert without a server: its demand still counts in the routing metrics, it is what they are for.
            metrics.routedUndispatched(layerIndex, routing);
            throw e;
        }
        metrics.routed(layerIndex, routing, batches, table);
        Deadline deadline = Deadline.after(dispatchTimeout.toNanos(), TimeUnit.NANOSECONDS);
        List<PendingCall> calls = dispatcher.dispatch(layerIndex, model.fingerprint(), x, hidden, wireType, batches,
                deadline);
        float[] out = new float[numTokens * hidden];
        try {
            // Shared expert(s) on the router, overlapping the remote expert calls.
            model.addSharedExpert(gate, x, numTokens, out);
            // Combine: final_hidden_states += Σ_servers (already weighted) partial sums.
            for (PendingCall call : calls) {
                WeightedCombiner.addPartial(out, hidden, call.batch(), ExpertDispatcher.await(call, layerIndex));
            }
        } catch (RuntimeException e) {
            calls.forEach(c -> c.response().cancel(true));
            throw e;
        }
        int bad = HiddenStatesCodec.firstUnrepresentable(out, wireType);
        if (bad >= 0) {
            // Finite inputs that overflow the experts (or the bfloat16 reply): the client's data, as for the gate.
            throw HiddenStatesPayloads.overflow(x, hidden, bad / hidden, "layer "
                    + Integer.toUnsignedString(layerIndex) + " (its output does not fit " + wireType + ")");
        }
        ForwardResponse.Builder response = ForwardResponse.newBuilder()
                .setRequestId(request.getRequestId())
                .setHiddenStates(HiddenStatesPayloads.encode(out, 0, numTokens, hidden, wireType));
        if (request.getReturnRouting()) {
            Routing.Builder r = Routing.newBuilder().setNumExpertsPerToken(routing.topK());
            for (int id : routing.expertIds()) {
                r.addExpertIds(id);
            }
            for (float w : routing.routingWeights()) {
                r.addRoutingWeights(w);
            }
            response.setRouting(r);
        }
        return response.build();
    }
}
