import { NotReadyError } from "../errors.ts";
import { ModelPack } from "./model-pack.ts";

/**
 * A stand-in for a pack that could not be loaded: closing it does nothing, and reading anything else
 * throws a `NotReadyError` with the reason, so routes need no special case for a missing pack. Tests
 * of routes that never embed use it too.
 */
export function unavailableModelPack(reason: string): ModelPack {
  const message = `The model pack is not available: ${reason.replace(/\.$/, "")}.`;
  // The prototype makes `instanceof ModelPack` hold; every property read goes through the trap below.
  return new Proxy(Object.create(ModelPack.prototype) as ModelPack, {
    get(_target, property) {
      if (property === "close") return async () => undefined;
      if (property === "closed") return true;
      // Lets the stand-in pass through `await` and promise resolution without throwing.
      if (property === "then" || typeof property === "symbol") return undefined;
      throw new NotReadyError(message, { context: { reason } });
    },
  });
}
