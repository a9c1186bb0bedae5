package dev.moe.router;

import dev.moe.core.config.ServerArguments;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.PropertySource;

/** The router: gating networks of every MoE layer, dispatch to expert servers, combine. */
@SpringBootApplication
@EnableConfigurationProperties(RouterProperties.class)
// Defaults under a module-specific name: the CLI puts both services on one classpath.
@PropertySource("classpath:router-service-defaults.properties")
public class RouterServiceApplication {
    public static void main(String[] args) {
        String problem = ServerArguments.problem(args, "moe.router", RouterProperties.class);
        if (problem != null) { // Spring would ignore it and start with the defaults
            System.err.println("router-service: " + problem);
            System.exit(2);
        }
        SpringApplication.run(RouterServiceApplication.class, args);
    }
}
