package dev.moe.core.config;

import java.lang.reflect.RecordComponent;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Checks a service's command line before Spring Boot reads it. Spring binds {@code --a.b=c} as a property and ignores
 * every name nothing reads, so {@code --weights=int8} or {@code --moe.expert.weigths=int8} would start a BF16 server
 * without a word. The service's own settings (one {@code @ConfigurationProperties} record, nested records included)
 * must be spelt as Spring would bind them (kebab-case, camelCase or underscores); Spring's own namespaces pass
 * through unchecked. Environment variables are not checked: Kubernetes injects service-link variables whose names
 * nobody chose.
 */
public final class ServerArguments {
    /** Namespaces of Spring Boot, Spring gRPC and Actuator settings a service's command line may set. */
    private static final Set<String> SPRING_NAMESPACES = Set.of("spring.", "server.", "management.", "logging.",
            "info.");
    /** Spring Boot's own switches. */
    private static final Set<String> SPRING_FLAGS = Set.of("debug", "trace");

    private ServerArguments() {
    }

    /**
     * The first problem with {@code args} as the command line of a service whose settings are {@code properties}
     * under {@code prefix} (such as {@code moe.expert}), or null when there is none.
     */
    public static String problem(String[] args, String prefix, Class<? extends Record> properties) {
        Map<String, String> settings = new TreeMap<>(); // canonical name → kebab-case name
        collect(properties, prefix, settings);
        for (String arg : args) {
            if (!arg.startsWith("--") || arg.length() == 2) {
                return "unexpected argument '" + arg + "': settings are --name=value, e.g. --" + prefix
                        + ".model=/models/m";
            }
            int eq = arg.indexOf('=');
            String name = arg.substring(2, eq >= 0 ? eq : arg.length());
            String bindable = canonical(name.replaceAll("\\[[^]]*]", "")); // list indices: --a.b[0]=x
            if (SPRING_FLAGS.contains(name) || SPRING_NAMESPACES.stream().anyMatch(bindable::startsWith)) {
                continue;
            }
            if (settings.containsKey(bindable)) {
                continue;
            }
            if (bindable.startsWith(canonical(prefix) + ".")) {
                return "unknown setting --" + name + "; the " + prefix + " settings are "
                        + String.join(", ", settings.values());
            }
            if (bindable.startsWith("moe.")) {
                return "--" + name + " is not a setting of this service (its settings are " + prefix + ".*)";
            }
            if (bindable.equals("port")) {
                return "unknown option --port: the gRPC port is --spring.grpc.server.port, the HTTP (metrics) port"
                        + " --server.port";
            }
            String meant = settings.get(canonical(prefix + "." + bindable));
            return "unknown option --" + name + (meant != null ? ": did you mean --" + meant + "?"
                    : "; settings are Spring properties such as --" + prefix + ".model=... (see the README's table)");
        }
        return null;
    }

    private static void collect(Class<?> record, String path, Map<String, String> into) {
        for (RecordComponent c : record.getRecordComponents()) {
            String child = path + "." + c.getName().replaceAll("([a-z0-9])([A-Z])", "$1-$2").toLowerCase(Locale.ROOT);
            if (c.getType().isRecord()) {
                collect(c.getType(), child, into);
            } else {
                into.put(canonical(child), child);
            }
        }
    }

    /** A name as Spring's relaxed binding compares it: lower case, without dashes and underscores. */
    private static String canonical(String name) {
        return name.replace("-", "").replace("_", "").toLowerCase(Locale.ROOT);
    }
}
