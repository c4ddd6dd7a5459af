/** Concrete tensor shapes: a definition's symbolic shape with a workload's axes filled in. */
import type { Definition } from "./schema.ts";

/** Concrete shape of a definition tensor for a workload, or null for a scalar. */
export function inferShape(
  def: Definition,
  tensor: string,
  axes: Record<string, number>,
): number[] | null {
  const spec = def.inputs[tensor] ?? def.outputs[tensor];
  if (!spec || spec.shape === null) return null;
  return spec.shape.map((a) => {
    const ax = def.axes[a];
    if (ax.type === "const") return ax.value;
    const v = axes[a];
    if (v === undefined) throw new Error(`var axis "${a}" has no value in the workload`);
    return v;
  });
}
