/**
 * Option checks shared by the synth modules: each failure is a ValidationError that names the option,
 * shows the value and says what is allowed.
 */
import { ValidationError } from "../errors.ts";

/** Throws unless `value` is an integer in [min, max]; `hint` is appended to the message. */
export function checkInteger(
  name: string,
  value: number,
  range: { min: number; max: number },
  hint = "",
): void {
  if (!Number.isInteger(value) || value < range.min || value > range.max) {
    const message = `${name} is ${value}; it must be an integer from ${range.min} to ${range.max}.`;
    throw new ValidationError(hint ? `${message} ${hint}` : message, { context: { [name]: value } });
  }
}

/** Returns the allowed values to choose from: `given` (non-empty, each one of `all`) or `all`. */
export function checkChoices<T extends string>(
  name: string,
  given: readonly T[] | undefined,
  all: readonly T[],
): T[] {
  const choices = [...(given ?? all)];
  if (choices.length === 0 || choices.some((choice) => !all.includes(choice))) {
    throw new ValidationError(
      `${name} must be a non-empty list of ${all.join(", ")}; got ${JSON.stringify(given)}.`,
      {
        context: { [name]: given },
      },
    );
  }
  return choices;
}
