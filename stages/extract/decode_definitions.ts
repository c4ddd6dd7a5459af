/**
 * Definitions for the decode grid's points that the dataset lacks, made by one generator from the
 * dataset's own GQA paged-decode definitions: a template of the same page-size family (page size 1
 * has no `kv_last_page_len` input and a reference of its own) with its constant axes, name,
 * description, model tags and the reference's `assert <axis> == <value>` checks set to the new
 * point's. Nothing is hand-copied, so a new definition is the template's contract at other sizes.
 */
import { type Definition, Definition as DefinitionSchema } from "../../pipeline/trace/mod.ts";
import { decodeDefinitionName, type HeadConfig } from "./decode_grid.ts";

/** The templates: Llama-3.1-8B's decode definitions, the shapes the project's kernels are tuned on. */
export const TEMPLATE_PS1 = "gqa_paged_decode_h32_kv8_d128_ps1";
export const TEMPLATE_PAGED = "gqa_paged_decode_h32_kv8_d128_ps64";

/** The constant axes the generator sets, and the reference asserts it rewrites. */
const CONST_AXES = ["num_qo_heads", "num_kv_heads", "head_dim", "page_size"] as const;

/** The tag every generated definition carries, so a reader can tell it from the dataset's. */
export const SYNTHETIC_TAG = "source:tracepipe-decode-characterization";

/** The template a page size uses. */
export const templateFor = (pageSize: number) => pageSize === 1 ? TEMPLATE_PS1 : TEMPLATE_PAGED;

/**
 * The definition of one (heads, head_dim, page size) point from its template. Throws, naming the
 * template and what is missing, when the template does not have the shape the generator rewrites.
 */
export function generateDecodeDefinition(
  template: Definition,
  config: Pick<HeadConfig, "num_qo_heads" | "num_kv_heads" | "models">,
  headDim: number,
  pageSize: number,
): Definition {
  const values: Record<(typeof CONST_AXES)[number], number> = {
    num_qo_heads: config.num_qo_heads,
    num_kv_heads: config.num_kv_heads,
    head_dim: headDim,
    page_size: pageSize,
  };
  const doc = structuredClone(template);
  doc.name = decodeDefinitionName(config.num_qo_heads, config.num_kv_heads, headDim, pageSize);
  let reference = doc.reference;
  for (const axis of CONST_AXES) {
    const ax = doc.axes[axis];
    if (!ax || ax.type !== "const") {
      throw new Error(`template ${template.name}: $.axes.${axis}: not a const axis`);
    }
    doc.axes[axis] = { ...ax, value: values[axis] };
    const re = new RegExp(`(assert ${axis} == )\\d+\\b`, "g");
    const hits = reference.match(re)?.length ?? 0;
    if (hits !== 1) {
      throw new Error(
        `template ${template.name}: $.reference: expected one "assert ${axis} == N", found ${hits}`,
      );
    }
    reference = reference.replace(re, `$1${values[axis]}`);
  }
  doc.reference = reference;
  const family = pageSize === 1 ? "" : ` (page_size=${pageSize})`;
  doc.description =
    `Batched Grouped Query Attention decode with a paged KV cache${family}. Synthetic shape of ` +
    `tracepipe's decode characterization grid (${config.models.join(", ")}); generated from ` +
    `${template.name}.`;
  doc.tags = [
    ...(template.tags ?? []).filter((t) => !/^(model|status|tp):/.test(t)),
    "status:synthetic",
    "tp:1",
    SYNTHETIC_TAG,
  ];
  return DefinitionSchema.parse(doc);
}
