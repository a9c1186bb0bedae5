package dev.moe.expert.shard;

import dev.moe.core.kernels.ExpertFfn;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * Running totals of the ComputeExperts calls this server has served (what it received, not what it was asked), and
 * per expert the tokens it processed and the activation sparsity its projections achieved.
 */
public final class ExpertCallStats {
    private final AtomicLong calls = new AtomicLong();
    private final AtomicLong tokens = new AtomicLong();
    private final AtomicLong assignments = new AtomicLong();
    private final PerExpert[] experts;

    private static final class PerExpert {
        final LongAdder tokens = new LongAdder();
        final LongAdder gateUpValues = new LongAdder();
        final LongAdder gateUpPruned = new LongAdder();
        final LongAdder downValues = new LongAdder();
        final LongAdder downPruned = new LongAdder();
        final LongAdder sparseRuns = new LongAdder();
        final LongAdder denseRuns = new LongAdder();
    }

    /** Achieved numbers of one expert. */
    public record ExpertLoad(int expertId, long tokens, double gateUpSparsity, double downSparsity, long sparseRuns,
                             long denseRuns) {
    }

    public ExpertCallStats(int numExperts) {
        experts = new PerExpert[numExperts];
        for (int e = 0; e < numExperts; e++) {
            experts[e] = new PerExpert();
        }
    }

    public void record(int numTokens, int numAssignments, ExpertComputer.Result result, int hiddenSize,
                       int intermediateSize) {
        calls.incrementAndGet();
        tokens.addAndGet(numTokens);
        assignments.addAndGet(numAssignments);
        for (int i = 0; i < result.expertIds().length; i++) {
            PerExpert e = experts[result.expertIds()[i]];
            int n = result.tokensPerExpert()[i];
            ExpertFfn.Stats s = result.stats()[i];
            e.tokens.add(n);
            long xValues = (long) n * hiddenSize;
            long hValues = (long) n * intermediateSize;
            e.gateUpValues.add(xValues);
            e.gateUpPruned.add(Math.round(s.gateUp().prunedFraction() * xValues));
            e.downValues.add(hValues);
            e.downPruned.add(Math.round(s.down().prunedFraction() * hValues));
            (s.gateUp().sparse() ? e.sparseRuns : e.denseRuns).increment();
            (s.down().sparse() ? e.sparseRuns : e.denseRuns).increment();
        }
    }

    /** Successful calls. */
    public long calls() {
        return calls.get();
    }

    /** Token rows received (each token once per call, however many of its experts live here). */
    public long tokens() {
        return tokens.get();
    }

    /** (token, expert) pairs computed. */
    public long assignments() {
        return assignments.get();
    }

    public ExpertLoad expert(int expertId) {
        PerExpert e = experts[expertId];
        return new ExpertLoad(expertId, e.tokens.sum(), ratio(e.gateUpPruned.sum(), e.gateUpValues.sum()),
                ratio(e.downPruned.sum(), e.downValues.sum()), e.sparseRuns.sum(), e.denseRuns.sum());
    }

    private static double ratio(long part, long whole) {
        return whole == 0 ? 0.0 : (double) part / whole;
    }
}
