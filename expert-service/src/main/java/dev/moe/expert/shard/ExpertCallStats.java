package dev.moe.expert.shard;

import java.util.concurrent.atomic.AtomicLong;

/** Running totals of the ComputeExperts calls this server has served (what it received, not what it was asked). */
public final class ExpertCallStats {
    private final AtomicLong calls = new AtomicLong();
    private final AtomicLong tokens = new AtomicLong();
    private final AtomicLong assignments = new AtomicLong();

    public void record(int numTokens, int numAssignments) {
        calls.incrementAndGet();
        tokens.addAndGet(numTokens);
        assignments.addAndGet(numAssignments);
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
}
