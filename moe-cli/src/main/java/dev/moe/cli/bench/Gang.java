package dev.moe.cli.bench;

import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.function.IntConsumer;

/** N threads (the caller is member 0) that start a task together and wait for each other at its end. */
final class Gang implements AutoCloseable {
    private final Thread[] helpers;
    private final CyclicBarrier start;
    private final CyclicBarrier end;
    private volatile IntConsumer task;
    private volatile boolean closed;
    private volatile Throwable failure;

    Gang(int members) {
        if (members < 1) {
            throw new IllegalArgumentException("a gang needs at least one member");
        }
        start = new CyclicBarrier(members);
        end = new CyclicBarrier(members);
        helpers = new Thread[members - 1];
        for (int i = 0; i < helpers.length; i++) {
            int member = i + 1;
            helpers[i] = Thread.ofPlatform().daemon().name("moe-bench-" + member).start(() -> loop(member));
        }
    }

    private void loop(int member) {
        try {
            while (true) {
                start.await();
                if (closed) {
                    return;
                }
                try {
                    task.accept(member);
                } catch (Throwable t) {
                    failure = t;
                }
                end.await();
            }
        } catch (InterruptedException | BrokenBarrierException e) {
            Thread.currentThread().interrupt();
        }
    }

    int members() {
        return helpers.length + 1;
    }

    /** Runs {@code body.accept(member)} on every member at once; returns when all are done. */
    void run(IntConsumer body) {
        task = body;
        try {
            start.await();
            body.accept(0);
            end.await();
        } catch (InterruptedException | BrokenBarrierException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("benchmark threads interrupted", e);
        }
        if (failure != null) {
            Throwable t = failure;
            failure = null;
            throw new IllegalStateException("benchmark thread failed: " + t, t);
        }
    }

    @Override
    public void close() {
        closed = true;
        try {
            if (helpers.length > 0) {
                start.await();
            }
        } catch (InterruptedException | BrokenBarrierException e) {
            Thread.currentThread().interrupt();
        }
    }
}
