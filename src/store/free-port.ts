/**
 * Local TCP port helpers for the embedded Milvus Lite.
 *
 * Lite's gRPC server binds with SO_REUSEPORT, so a second Lite on a port that another Lite already
 * listens on starts without complaint and the two share the traffic. A plain Node listener (no
 * SO_REUSEPORT) does get EADDRINUSE there, which is how {@link isPortFree} tells a taken port.
 */
import { createServer } from "node:net";

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address !== null ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

/** Options of {@link findFreePort}. */
export interface FindFreePortOptions {
  /** Interface to probe. */
  host?: string;
}

/** Asks the OS for a TCP port that is free on `host` right now. */
export function findFreePort({ host = "127.0.0.1" }: FindFreePortOptions = {}): Promise<number> {
  return listenOnce(host, 0);
}

/** Options of {@link isPortFree}. */
export interface IsPortFreeOptions {
  port: number;
  host?: string;
}

/** True when nothing listens on `host:port` (a listener with SO_REUSEPORT included). */
export async function isPortFree({ port, host = "127.0.0.1" }: IsPortFreeOptions): Promise<boolean> {
  try {
    await listenOnce(host, port);
    return true;
  } catch {
    return false;
  }
}
