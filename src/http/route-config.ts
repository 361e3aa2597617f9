/** Per-route flags read by the app-wide hooks. */
declare module 'fastify' {
  interface FastifyContextConfig {
    /** reachable without an API key: probes and metrics */
    public?: boolean;
    /** answered even when the process is under pressure: liveness and metrics */
    alwaysAnswer?: boolean;
  }
}

export {};
