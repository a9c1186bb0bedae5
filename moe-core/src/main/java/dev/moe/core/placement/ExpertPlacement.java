package dev.moe.core.placement;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

/**
 * Which routed experts expert server {@code serverIndex} of {@code numServers} hosts. The same experts are hosted in
 * every MoE layer. {@code contiguous}: server i hosts the i-th contiguous range (sizes differ by at most one);
 * {@code strided}: server i hosts every expert e with {@code e % numServers == i}.
 */
public final class ExpertPlacement {
    private ExpertPlacement() {
    }

    public enum Strategy { CONTIGUOUS, STRIDED }

    public static int[] experts(Strategy strategy, int numExperts, int serverIndex, int numServers) {
        if (numServers < 1 || serverIndex < 0 || serverIndex >= numServers) {
            throw new IllegalArgumentException("server index " + serverIndex + " is not in [0, " + numServers + ")");
        }
        if (numServers > numExperts) {
            throw new IllegalArgumentException(numServers + " expert servers for " + numExperts
                    + " experts: some servers would host none; use at most " + numExperts);
        }
        List<Integer> ids = new ArrayList<>();
        if (strategy == Strategy.STRIDED) {
            for (int e = serverIndex; e < numExperts; e += numServers) {
                ids.add(e);
            }
        } else {
            int from = (int) ((long) numExperts * serverIndex / numServers);
            int to = (int) ((long) numExperts * (serverIndex + 1) / numServers);
            for (int e = from; e < to; e++) {
                ids.add(e);
            }
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Parses an explicit list such as {@code "0-7,12,14"}; every id must be below {@code numExperts}. */
    public static int[] parse(String spec, int numExperts) {
        TreeSet<Integer> ids = new TreeSet<>();
        for (String part : spec.split(",")) {
            String p = part.trim();
            if (p.isEmpty()) {
                continue;
            }
            try {
                int dash = p.indexOf('-');
                int from = Integer.parseInt(dash < 0 ? p : p.substring(0, dash).trim());
                int to = dash < 0 ? from : Integer.parseInt(p.substring(dash + 1).trim());
                if (from < 0 || to < from || to >= numExperts) {
                    throw new IllegalArgumentException("expert range '" + p + "' is not within [0, " + numExperts + ")");
                }
                for (int e = from; e <= to; e++) {
                    ids.add(e);
                }
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("expert list '" + spec + "': '" + p + "' is not a number or range");
            }
        }
        if (ids.isEmpty()) {
            throw new IllegalArgumentException("expert list '" + spec + "' names no expert");
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }
}
