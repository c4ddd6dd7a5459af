/**
 * The MoE routing model of the simulation: how many of a rank's experts a batch of tokens reaches,
 * and the largest token count any one of them gets.
 */
import { rng } from "../lib/mod.ts";
import type { ModelShape } from "./model.ts";

/**
 * Seeded routing statistics: expert popularity ∝ 1/rank^skew over a seeded permutation of the
 * experts. The permutation and every later `stats` call draw from one random stream, so the
 * order of calls is part of the result.
 */
export class RoutingModel {
  private readonly rand: () => number;
  private readonly pop: Float64Array;

  constructor(private readonly model: ModelShape, seed: number, skew: number) {
    this.rand = rng(seed);
    this.pop = expertPopularity(model.experts, skew, this.rand);
  }

  /** [experts with at least one token, max tokens of one expert] among the rank's local experts. */
  stats(tokens: number): [number, number] {
    if (!this.model.experts) return [0, 0];
    let active = 0, max = 0;
    const draws = tokens * this.model.topK;
    for (let e = 0; e < this.model.localExperts; e++) {
      // Each token picks top_k distinct experts; an expert's count is ~Poisson(λ), capped at tokens.
      const c = Math.max(0, Math.min(tokens, this.poisson(draws * this.pop[e])));
      if (c > 0) active++;
      if (c > max) max = c;
    }
    return [active, max];
  }

  /** A Poisson(λ) draw: Knuth's product method for small λ, a rounded normal for large λ. */
  private poisson(lam: number): number {
    const rand = this.rand;
    if (lam < 30) {
      const L = Math.exp(-lam);
      let k = 0, p = rand();
      while (p > L) {
        k++;
        p *= rand();
      }
      return k;
    }
    return Math.round(lam + Math.sqrt(lam) * this.gauss());
  }

  /** A standard normal draw (Box–Muller; the two uniforms are drawn in this order). */
  private gauss(): number {
    const rand = this.rand;
    return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  }
}

/** Normalized popularity of each of `E` experts (empty when the model has none). */
function expertPopularity(E: number, skew: number, rand: () => number): Float64Array {
  const pop = new Float64Array(E);
  if (!E) return pop;
  const perm = Array.from({ length: E }, (_, i) => i);
  for (let i = E - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  let sum = 0;
  for (let i = 0; i < E; i++) sum += pop[perm[i]] = 1 / Math.pow(i + 1, skew);
  for (let i = 0; i < E; i++) pop[i] /= sum;
  return pop;
}
