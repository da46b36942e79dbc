import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  BUNDLED_MODEL_PACK,
  CONFIG_TABLE_DOC,
  documentConfigTable,
  markdownTableCells,
  parseConfig,
  redactConfig,
  renderConfigTable,
  settings,
  spliceConfigTable,
} from "../src/config.ts";
import { ConfigError } from "../src/errors.ts";

function configError(env: Record<string, string>): ConfigError {
  try {
    parseConfig({ env, cwd: "/srv/loupe" });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`parseConfig accepted ${JSON.stringify(env)}`);
}

describe("parseConfig", () => {
  it("applies the documented defaults: data paths against cwd, bundled files against the install directory", () => {
    const config = parseConfig({ env: {}, cwd: "/srv/loupe", installDir: "/opt/loupe" });
    expect(config).toEqual({
      port: 8080,
      host: "127.0.0.1",
      dataDir: "/srv/loupe/data",
      milvusAddress: undefined,
      milvusToken: undefined,
      milvusDatabase: undefined,
      milvusTimeoutMs: 10_000,
      milvusLongTimeoutMs: 120_000,
      collectionPrefix: "loupe",
      metric: "COSINE",
      indexType: "AUTOINDEX",
      venvDir: "/opt/loupe/.venv",
      defaultTenant: "default",
      auth: "keys",
      allowedHosts: [],
      keySecret: undefined,
      databaseUrl: undefined,
      redisUrl: undefined,
      redisKeyPrefix: "loupe:",
      logLevel: "info",
      modelPack: "/opt/loupe/models/shapes-world-tiny",
      modelsDir: "/srv/loupe/models",
      ocr: "auto",
      ocrMaxLines: 512,
      ocrMaxSide: 2560,
      ocrMinConfidence: 0.5,
      ocrTimeoutMs: 20_000,
      embeddingDim: undefined,
      shutdownTimeoutMs: 10_000,
      metrics: "on",
      metricsPort: undefined,
      milvusStartTimeoutMs: 30_000,
      milvusRestartAttempts: 5,
      urlAllowHosts: [],
      urlMaxBytes: 104_857_600,
      urlTimeoutMs: 30_000,
      urlMaxRedirects: 3,
      maxImageBytes: 20_971_520,
      maxImagePixels: 40_000_000,
      inferenceThreads: 0,
      visionReplicas: 1,
      executionProviders: ["cpu"],
      maxImageFrames: 100,
      maxUploadBytes: 104_857_600,
      maxJsonBytes: 33_554_432,
      rateLimitPerSecond: 50,
      regionMinScore: undefined,
      regions: "on",
      rateLimitBurst: 100,
      maxHeavyPerTenant: 8,
      queueConcurrency: 0,
      queueMaxWaiting: 16,
      requestDeadlineMs: 5000,
      chatGroundingBudgetMs: 1500,
      chatGroundingMaxImages: 6,
      headersTimeoutMs: 20_000,
      requestTimeoutMs: 300_000,
      searchDenseWeight: 0.5,
      searchRanker: "rrf",
      searchRrfK: 60,
      searchTextWeight: 0.5,
      keepAliveTimeoutMs: 5_000,
      maxConnections: 512,
      maxItemsPerRequest: 1000,
      ingestSyncMaxItems: 64,
      workerConcurrency: 1,
      workerBatchItems: 16,
      jobQueueMaxItems: 1_000_000,
      jobLeaseMs: 60_000,
      jobMaxAttempts: 5,
      maxMetadataBytes: 16_384,
      thumbnailSize: 256,
      videoSampleFps: 2,
      videoSegmentSeconds: 2,
      videoShotThreshold: 0.27,
      videoMaxBytes: 524_288_000,
      videoMaxDurationS: 1800,
      videoMaxPixels: 8_294_400,
      videoMaxStreams: 8,
      videoMaxFrames: 7200,
      videoTimeoutMs: 300_000,
      videoSyncMaxSeconds: 60,
      blobGcGraceS: 600,
      blobGcAtStart: "on",
      s3Bucket: undefined,
      s3Prefix: "blobs/",
      s3Endpoint: undefined,
      s3ForcePathStyle: "off",
      s3Region: "us-east-1",
      feedbackMaxPending: 1000,
      eventsHalfLifeHours: 168,
      eventsMaxPerUser: 1000,
      promptsDir: "/opt/loupe/prompts",
      llmModel: undefined,
      openaiBaseUrl: undefined,
      openaiApiKey: undefined,
      llmTimeoutMs: 30_000,
      llmMaxRetries: 2,
      llmTemperature: 0.2,
      llmMaxTokens: 512,
      llmVision: false,
      chatMaxTurns: 20,
      chatMaxImages: 4,
      publicUrl: undefined,
      mediaUrlTtlS: 3600,
      chatSources: "annotations",
    });
  });

  it("resolves a bundled-file path the caller sets against cwd, and an empty one as unset", () => {
    const set = parseConfig({
      env: { LOUPE_MODEL_PACK: "packs/mine", LOUPE_PROMPTS_DIR: "my-prompts", LOUPE_VENV_DIR: "" },
      cwd: "/srv/loupe",
      installDir: "/opt/loupe",
    });
    expect(set.modelPack).toBe("/srv/loupe/packs/mine");
    expect(set.promptsDir).toBe("/srv/loupe/my-prompts");
    expect(set.venvDir).toBe("/opt/loupe/.venv");
    expect(set.dataDir).toBe("/srv/loupe/data");
  });

  it("finds the bundled pack and prompts from any working directory", () => {
    const config = parseConfig({ env: {}, cwd: os.tmpdir() });
    expect(config.modelPack).toBe(BUNDLED_MODEL_PACK);
    expect(existsSync(path.join(config.modelPack, "manifest.json"))).toBe(true);
    expect(existsSync(path.join(config.promptsDir, "answer.v1.md"))).toBe(true);
  });

  it("reads every variable it documents", () => {
    const config = parseConfig({
      cwd: "/srv/loupe",
      env: {
        PORT: "0",
        HOST: "::1",
        LOUPE_DATA_DIR: "/var/lib/loupe",
        MILVUS_ADDRESS: "https://milvus.example.com:19530",
        MILVUS_TOKEN: "root:Milvus",
        MILVUS_DATABASE: "rag_prod",
        MILVUS_TIMEOUT_MS: "2500",
        LOUPE_COLLECTION_PREFIX: "loupe_staging",
        LOUPE_METRIC: "IP",
        LOUPE_INDEX_TYPE: "HNSW",
        LOUPE_VENV_DIR: "venv",
        LOUPE_DEFAULT_TENANT: "acme-1",
        LOUPE_LOG_LEVEL: "debug",
        LOUPE_MODEL_PACK: "/opt/packs/tiny",
        LOUPE_MODELS_DIR: "/opt/packs",
        LOUPE_EMBEDDING_DIM: "256",
        LOUPE_SHUTDOWN_TIMEOUT_MS: "0",
        LOUPE_MILVUS_START_TIMEOUT_MS: "5000",
        LOUPE_MILVUS_RESTART_ATTEMPTS: "0",
        LOUPE_URL_ALLOW_HOSTS: " 127.0.0.1, localhost,10.0.0.0/8 ,fd00::/8",
        LOUPE_URL_MAX_BYTES: "1048576",
        LOUPE_URL_TIMEOUT_MS: "2000",
        LOUPE_URL_MAX_REDIRECTS: "0",
      },
    });
    expect(config).toMatchObject({
      port: 0,
      host: "::1",
      dataDir: "/var/lib/loupe",
      milvusAddress: "https://milvus.example.com:19530",
      milvusToken: "root:Milvus",
      milvusDatabase: "rag_prod",
      milvusTimeoutMs: 2500,
      collectionPrefix: "loupe_staging",
      metric: "IP",
      indexType: "HNSW",
      venvDir: "/srv/loupe/venv",
      defaultTenant: "acme-1",
      logLevel: "debug",
      modelPack: "/opt/packs/tiny",
      modelsDir: "/opt/packs",
      embeddingDim: 256,
      shutdownTimeoutMs: 0,
      milvusStartTimeoutMs: 5000,
      milvusRestartAttempts: 0,
      urlAllowHosts: ["127.0.0.1", "localhost", "10.0.0.0/8", "fd00::/8"],
      urlMaxBytes: 1_048_576,
      urlTimeoutMs: 2000,
      urlMaxRedirects: 0,
    });
  });

  it("keeps LOUPE_PUBLIC_URL's path prefix without its trailing slash", () => {
    expect(parseConfig({ env: { LOUPE_PUBLIC_URL: "https://example.com/loupe/" } }).publicUrl).toBe(
      "https://example.com/loupe",
    );
    expect(parseConfig({ env: { LOUPE_PUBLIC_URL: "http://[::1]:8080" } }).publicUrl).toBe(
      "http://[::1]:8080",
    );
  });

  it("treats an empty variable as unset", () => {
    const config = parseConfig({ env: { PORT: "", MILVUS_ADDRESS: "", LOUPE_EMBEDDING_DIM: "" } });
    expect(config.port).toBe(8080);
    expect(config.milvusAddress).toBeUndefined();
    expect(config.embeddingDim).toBeUndefined();
  });

  it.each([
    ["PORT", "http", "integer 0–65535"],
    ["PORT", "65536", "integer 0–65535"],
    ["PORT", "-1", "integer 0–65535"],
    ["PORT", "8e3", "integer 0–65535"],
    ["HOST", "local host", "hostname, IPv4 or IPv6 address"],
    ["MILVUS_ADDRESS", "grpc://milvus:19530", "`host:port`, `http://host:port` or `https://host:port`"],
    ["MILVUS_ADDRESS", "milvus:19530/x?y", "`host:port`"],
    ["MILVUS_DATABASE", "prod-db", "letters, digits and `_`"],
    ["MILVUS_TIMEOUT_MS", "50", "integer 100–600000"],
    ["LOUPE_COLLECTION_PREFIX", "9loupe", "not starting with a digit"],
    ["LOUPE_METRIC", "L2", "`COSINE` or `IP`"],
    ["LOUPE_METRIC", "cosine", "`COSINE` or `IP`"],
    ["LOUPE_INDEX_TYPE", "IVF_FLAT", "`AUTOINDEX` or `HNSW`"],
    ["LOUPE_DEFAULT_TENANT", 'x" or true', "1–128 characters from letters, digits and `_.@:-`"],
    ["LOUPE_LOG_LEVEL", "verbose", "`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`"],
    ["LOUPE_EMBEDDING_DIM", "1", "integer 2–32768"],
    ["LOUPE_EMBEDDING_DIM", "512.5", "integer 2–32768"],
    ["LOUPE_SHUTDOWN_TIMEOUT_MS", "soon", "integer 0–600000"],
    ["LOUPE_MILVUS_START_TIMEOUT_MS", "10", "integer 1000–600000"],
    ["LOUPE_MILVUS_RESTART_ATTEMPTS", "101", "integer 0–100"],
    ["LOUPE_URL_ALLOW_HOSTS", "127.0.0.0/33", "comma-separated host names, IP addresses and CIDR ranges"],
    ["LOUPE_URL_ALLOW_HOSTS", "localhost,http://10.0.0.1/", "comma-separated host names"],
    ["LOUPE_URL_MAX_BYTES", "0", "integer 1–4294967295"],
    ["LOUPE_URL_TIMEOUT_MS", "50", "integer 100–600000"],
    ["LOUPE_URL_MAX_REDIRECTS", "11", "integer 0–10"],
    ["LOUPE_INFERENCE_THREADS", "-1", "integer 0–256"],
    ["LOUPE_EXECUTION_PROVIDERS", "tpu", "comma-separated list of cpu, cuda"],
    ["LOUPE_MAX_IMAGE_FRAMES", "0", "integer 1–100000"],
    ["OPENAI_BASE_URL", "localhost:11434/v1", "http(s) URL of an OpenAI-compatible API"],
    ["OPENAI_BASE_URL", "file:///etc/passwd", "http(s) URL of an OpenAI-compatible API"],
    ["LOUPE_LLM_TIMEOUT_MS", "5", "integer 100–600000"],
    ["LOUPE_LLM_MAX_RETRIES", "11", "integer 0–10"],
    ["LOUPE_LLM_TEMPERATURE", "2.5", "number 0–2"],
    ["LOUPE_LLM_VISION", "yes", "`true` or `false`"],
    ["LOUPE_CHAT_MAX_IMAGES", "0", "integer 1–32"],
    ["LOUPE_PUBLIC_URL", "loupe.example.com", "http(s) URL without query or fragment"],
    ["LOUPE_PUBLIC_URL", "https://loupe.example.com/?x=1", "http(s) URL without query or fragment"],
    ["LOUPE_PUBLIC_URL", "https://user@loupe.example.com", "http(s) URL without query or fragment"],
    ["LOUPE_MEDIA_URL_TTL_S", "30", "integer 60–604800"],
    ["LOUPE_CHAT_SOURCES", "footnotes", "`annotations` or `markdown`"],
  ])("rejects %s=%s, naming the variable, the value and what is allowed", (variable, value, allowed) => {
    const error = configError({ [variable]: value });
    expect(error.code).toBe("config_invalid");
    expect(error.message).toContain(`${variable}=${JSON.stringify(value)} is not allowed`);
    expect(error.message).toContain(allowed);
    expect(error.context).toEqual({ variables: [variable] });
  });

  it("never shows the LLM key, even when it is the invalid value", () => {
    const key = "sk-".padEnd(5000, "x");
    const error = configError({ OPENAI_API_KEY: key });
    expect(error.message).toContain("OPENAI_API_KEY=(hidden)");
    expect(error.message).not.toContain("sk-xx");
    const config = parseConfig({ env: { OPENAI_API_KEY: "sk-secret" }, cwd: "/srv/loupe" });
    expect(redactConfig(config).openaiApiKey).toBe("(hidden)");
  });

  it("accepts a PostgreSQL URL for LOUPE_DATABASE_URL, refuses other schemes, and never shows it", () => {
    const url = "postgres://loupe:pa55word@db.internal:5432/loupe?sslmode=require";
    expect(parseConfig({ env: { LOUPE_DATABASE_URL: url }, cwd: "/srv/loupe" }).databaseUrl).toBe(url);
    expect(
      redactConfig(parseConfig({ env: { LOUPE_DATABASE_URL: url }, cwd: "/srv/loupe" })).databaseUrl,
    ).toBe("(hidden)");
    const error = configError({ LOUPE_DATABASE_URL: "mysql://root:pa55word@db/loupe" });
    expect(error.message).toContain("LOUPE_DATABASE_URL=(hidden)");
    expect(error.message).toContain("postgres://user:password@host:5432/database");
    expect(error.message).not.toContain("pa55word");
  });

  it("accepts a Redis URL for LOUPE_REDIS_URL, refuses other forms, and never shows it", () => {
    for (const url of [
      "redis://127.0.0.1:6379",
      "redis://:pa55word@redis.internal:6379/2",
      "rediss://loupe:pa55word@[::1]:6380",
    ]) {
      expect(parseConfig({ env: { LOUPE_REDIS_URL: url }, cwd: "/srv/loupe" }).redisUrl).toBe(url);
    }
    const config = parseConfig({ env: { LOUPE_REDIS_URL: "redis://:pa55word@r:6379" }, cwd: "/srv/loupe" });
    expect(redactConfig(config).redisUrl).toBe("(hidden)");
    for (const url of ["http://:pa55word@redis:6379", "redis://:pa55word@redis:6379/db", "redis://a b"]) {
      const error = configError({ LOUPE_REDIS_URL: url });
      expect(error.message).toContain("LOUPE_REDIS_URL=(hidden)");
      expect(error.message).toContain("`redis://host:6379`");
      expect(error.message).not.toContain("pa55word");
    }
  });

  it("lists every problem at once", () => {
    const error = configError({ PORT: "x", LOUPE_METRIC: "L2", LOUPE_LOG_LEVEL: "loud" });
    expect(error.message).toMatch(/^Invalid configuration \(3 problems\):/);
    expect(error.message).toContain('PORT="x"');
    expect(error.message).toContain('LOUPE_METRIC="L2"');
    expect(error.message).toContain('LOUPE_LOG_LEVEL="loud"');
    expect(error.context).toEqual({ variables: ["PORT", "LOUPE_METRIC", "LOUPE_LOG_LEVEL"] });
  });
});

describe("configuration docs", () => {
  it("renders a header and one row per setting, with its variable, default, allowed values and meaning", () => {
    const [header, ...rows] = markdownTableCells(renderConfigTable());
    expect(header).toEqual(["Variable", "Default", "Allowed", "Meaning"]);
    expect(rows.map((row) => row[0])).toEqual(Object.values(settings).map((row) => `\`${row.env}\``));
    expect(rows.find((row) => row[0] === "`PORT`")).toEqual([
      "`PORT`",
      "`8080`",
      "integer 0–65535 (0 picks a free port)",
      "TCP port the HTTP server listens on.",
    ]);
    expect(rows.find((row) => row[0] === "`MILVUS_ADDRESS`")?.[1]).toBe("(unset)");
  });

  it("docs/configuration.md has the table generated from the schema (npm run docs:config)", async () => {
    const doc = await readFile(path.join(import.meta.dirname, "..", CONFIG_TABLE_DOC), "utf8");
    expect(markdownTableCells(documentConfigTable(doc))).toEqual(markdownTableCells(renderConfigTable()));
  });

  it("compares tables cell by cell, whatever their padding", () => {
    expect(markdownTableCells("| a  | b \\| c |\n| :-- | --- |\n|  1 | 2 |")).toEqual([
      ["a", "b \\| c"],
      ["1", "2"],
    ]);
  });

  it("refuses a README without the markers", () => {
    expect(() => spliceConfigTable("# Loupe\n")).toThrow(/config:start/);
    expect(() => documentConfigTable("# Loupe\n")).toThrow(/config:start/);
  });
});
