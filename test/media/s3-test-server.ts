/**
 * An S3 endpoint for the S3 blob store tests: moto's server mode (an emulator of the S3 API, not a storage
 * server), installed by `npm run setup` into `.tmp/s3-test-server/venv` and started here on a free port,
 * with a fresh bucket. `LOUPE_TEST_S3_ENDPOINT` (with `LOUPE_TEST_S3_BUCKET` and the usual `AWS_*`
 * credentials) runs the same tests against a real store instead, e.g. MinIO or Ceph RGW.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { findFreePort } from "../../src/store/free-port.ts";

/** The venv `scripts/setup.sh` installs moto into (relative to the repository root). */
export const MOTO_SERVER = path.resolve(
  import.meta.dirname,
  "../../.tmp/s3-test-server/venv/bin/moto_server",
);

/** A running S3 endpoint with a bucket of its own. */
export interface TestS3Server {
  endpoint: string;
  bucket: string;
  region: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Whether this is moto (an emulator) rather than a real store. */
  emulator: boolean;
  stop(): Promise<void>;
}

/** Starts moto on a free port (or uses `LOUPE_TEST_S3_ENDPOINT`) and creates a bucket. */
export async function startTestS3Server(): Promise<TestS3Server> {
  const external = process.env.LOUPE_TEST_S3_ENDPOINT;
  if (external !== undefined && external !== "") {
    const bucket = process.env.LOUPE_TEST_S3_BUCKET ?? "loupe-test";
    return {
      endpoint: external,
      bucket,
      region: process.env.AWS_REGION ?? "us-east-1",
      emulator: false,
      stop: async () => {},
    };
  }
  if (!existsSync(MOTO_SERVER)) {
    throw new Error(
      `The S3 test server is not installed (no ${MOTO_SERVER}). Run \`npm run setup\`, or set LOUPE_TEST_S3_ENDPOINT to a store to test against.`,
    );
  }
  const port = await findFreePort();
  const server: ChildProcess = spawn(MOTO_SERVER, ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  server.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const credentials = { accessKeyId: "loupe-test", secretAccessKey: "loupe-test-secret" };
  const stop = () =>
    new Promise<void>((resolve) => {
      if (server.exitCode !== null || server.signalCode !== null) return resolve();
      server.once("exit", () => resolve());
      server.kill("SIGTERM");
    });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (server.exitCode !== null) throw new Error(`moto_server exited with ${server.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${endpoint}/moto-api/`)).status < 500) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto_server did not answer at ${endpoint} within 30 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const bucket = `loupe-test-${randomBytes(4).toString("hex")}`;
  const client = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  client.destroy();
  return { endpoint, bucket, region: "us-east-1", credentials, emulator: true, stop };
}
