/**
 * GET /v1/models and GET /v1/models/{model} — the model names the chat endpoints answer to, in the
 * OpenAI list format, so chat UIs that speak the OpenAI API can offer them. `loupe` writes with the
 * configured LLM (or the offline composer when none is configured); `loupe-offline` always writes offline.
 */
import { z } from "@hono/zod-openapi";
import { NotFoundError } from "../../errors.ts";
import type { ChatRequest, LoupeChain } from "../../rag/types.ts";
import { createRouter, defineRoute, errorResponse, jsonResponse } from "../openapi.ts";

/** The model name that forces the offline composer. */
export const OFFLINE_MODEL_NAME = "loupe-offline";

/** One model in the OpenAI format. */
export const modelSchema = z
  .object({
    id: z.string().describe("The name to send as `model`."),
    object: z.literal("model"),
    created: z.number().int().describe("Seconds since the Unix epoch (when this server started)."),
    owned_by: z.string(),
  })
  .meta({ id: "Model" });

/** Body of a 200 from GET /v1/models. */
export const modelListSchema = z
  .object({
    object: z.literal("list"),
    data: z.array(modelSchema),
  })
  .meta({ id: "ModelList" });

/**
 * The composer a model name asks for.
 *
 * @throws NotFoundError (`model_not_found`, 404) naming the allowed models when the chain does not answer to `model`.
 */
export function composerForModel({
  chain,
  model,
}: {
  chain: Pick<LoupeChain, "modelNames">;
  model: string;
}): NonNullable<ChatRequest["composer"]> {
  if (!chain.modelNames.includes(model)) {
    throw new NotFoundError(
      `Model ${JSON.stringify(model.slice(0, 200))} is not served here; allowed models: ${chain.modelNames.join(", ")}.`,
      { code: "model_not_found", context: { model: model.slice(0, 200), allowed: [...chain.modelNames] } },
    );
  }
  return model === OFFLINE_MODEL_NAME ? "offline" : "auto";
}

/** GET /v1/models. */
export const listModelsRoute = defineRoute(
  {
    method: "get",
    path: "/v1/models",
    operationId: "listModels",
    tags: ["chat"],
    summary: "Model names of the chat endpoints",
    description:
      "OpenAI's list format. `loupe`: the configured LLM writes answers (offline when none is configured); `loupe-offline`: always offline.",
    responses: { 200: jsonResponse("The models.", modelListSchema) },
  },
  { access: { scope: "read", cost: 1 } },
);

/** GET /v1/models/{model}. */
export const getModelRoute = defineRoute(
  {
    method: "get",
    path: "/v1/models/{model}",
    operationId: "getModel",
    tags: ["chat"],
    summary: "One model name",
    request: {
      params: z.object({ model: z.string().min(1).describe("A model name from GET /v1/models.") }),
    },
    responses: {
      200: jsonResponse("The model.", modelSchema),
      404: errorResponse("Not a model name of this server (code model_not_found)."),
    },
  },
  { access: { scope: "read", cost: 1 } },
);

/** The /v1/models routes. */
export function createModelsRoute({ chain }: { chain: Pick<LoupeChain, "modelNames"> }) {
  const created = Math.floor(Date.now() / 1000);
  const describe = (id: string): z.infer<typeof modelSchema> => ({
    id,
    object: "model",
    created,
    owned_by: "loupe",
  });
  return createRouter()
    .openapi(listModelsRoute, (c) =>
      c.json({ object: "list" as const, data: chain.modelNames.map(describe) }, 200),
    )
    .openapi(getModelRoute, (c) => {
      const { model } = c.req.valid("param");
      composerForModel({ chain, model });
      return c.json(describe(model), 200);
    });
}
