import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Milvus Lite and ONNX sessions are heavy on a 2-core machine; files run one at a time.
    fileParallelism: false,
  },
});
