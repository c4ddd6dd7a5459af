/**
 * One night's pipeline run: the profile the sources name, with their `set` overrides, every
 * fetched TraceSet as a corpus of `generate` (as `reproduce --corpus` passes it) and every
 * serving-trace file as a trace of `collect`; then `runPipeline` over every stage, which runs only
 * the cells whose keys are new. Which cells ran this night is read back from the store.
 */
import { readFileSync } from "node:fs";
import {
  type AnyStage,
  type Interruption,
  PipelineError,
  runPipeline,
  type StageReport,
  type Store,
  unknownParamKey,
} from "../engine/mod.ts";
import { closeSharedSessions } from "../harness/mod.ts";
import { loadStages, STAGE_NAMES } from "../../stages/mod.ts";
import { RefreshInputError, type ServingTraceSource } from "./sources.ts";

/** A profile: stage name → params (keys starting with "_" are comments). */
export type Profile = Record<string, Record<string, unknown>>;

/** Reads a profile file, naming it and the field on any problem. */
export function readProfile(path: string, shown: string): { profile: Profile; text: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new RefreshInputError(`${shown}: $: the profile does not exist`);
  }
  let profile: unknown;
  try {
    profile = JSON.parse(text);
  } catch (e) {
    throw new RefreshInputError(`${shown}: $: malformed JSON: ${(e as Error).message}`);
  }
  if (typeof profile !== "object" || profile === null || Array.isArray(profile)) {
    throw new RefreshInputError(`${shown}: $: expected an object of stage name → params`);
  }
  for (const k of Object.keys(profile)) {
    if (!k.startsWith("_") && !STAGE_NAMES.includes(k)) {
      throw new RefreshInputError(
        `${shown}: $.${k}: unknown stage (stages: ${STAGE_NAMES.join(", ")})`,
      );
    }
  }
  return { profile: profile as Profile, text };
}

/** Applies `STAGE.KEY=VALUE` overrides (VALUE read as JSON when it parses), as `--set` does. */
export function applySets(profile: Profile, sets: string[], shown: string): Profile {
  const out: Profile = structuredClone(profile);
  sets.forEach((s, i) => {
    const m = /^([a-z_]+)\.([A-Za-z0-9_.]+)=(.*)$/s.exec(s);
    if (!m || !STAGE_NAMES.includes(m[1])) {
      throw new RefreshInputError(
        `${shown}: $.set[${i}]: "${s}" is not STAGE.KEY=VALUE with a stage of ${
          STAGE_NAMES.join(", ")
        }`,
      );
    }
    const [, stage, key, raw] = m;
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch { /* a plain string */ }
    let obj = (out[stage] ??= {}) as Record<string, unknown>;
    const path = key.split(".");
    for (const p of path.slice(0, -1)) obj = (obj[p] ??= {}) as Record<string, unknown>;
    obj[path[path.length - 1]] = value;
  });
  return out;
}

/** Rejects a `set` whose key its stage does not have (a typo would be dropped silently). */
function checkSetKeys(sets: string[], stages: AnyStage[], shown: string): void {
  sets.forEach((s, i) => {
    const [stageName, ...path] = s.slice(0, s.indexOf("=")).split(".");
    const stage = stages.find((st) => st.name === stageName);
    const bad = stage ? unknownParamKey(stage.params, path) : null;
    if (!bad) return;
    throw new RefreshInputError(
      `${shown}: $.set[${i}]: ${[stageName, ...bad.at].join(".")} has no param "${bad.key}"` +
        (bad.known.length ? ` (known: ${bad.known.join(", ")})` : ""),
    );
  });
}

/** The corpora and serving traces of the night, added to the profile. */
export interface NightInputs {
  /** Folders of the fetched TraceSets (absolute), imported by `generate` after the profile's. */
  corpora: string[];
  /** Serving-trace files (repository-relative or absolute), replayed by `collect` after the profile's. */
  servingTraces: Array<{ source: ServingTraceSource; path: string }>;
}

/** The defaults `withInputs` extends when the profile leaves a list out (the stages' own). */
export interface InputDefaults {
  corpus: string[];
  traces: unknown[];
}

/** The defaults of generate's `corpus` and collect's `traces`, read from their params schemas. */
export function inputDefaults(stages: AnyStage[]): InputDefaults {
  const defaults = (name: string) =>
    (stages.find((s) => s.name === name)?.params.parse({}) ?? {}) as Record<string, unknown>;
  return {
    corpus: (defaults("generate").corpus as string[] | undefined) ?? [],
    traces: (defaults("collect").traces as unknown[] | undefined) ?? [],
  };
}

/**
 * The profile with the night's corpora and serving traces appended to the profile's lists (or to
 * the stages' defaults where the profile has none, as `reproduce --corpus` appends).
 */
export function withInputs(
  profile: Profile,
  inputs: NightInputs,
  defaults: InputDefaults,
): Profile {
  const out: Profile = structuredClone(profile);
  if (inputs.corpora.length) {
    const gen = (out.generate ??= {});
    const list = Array.isArray(gen.corpus) ? gen.corpus as string[] : defaults.corpus;
    gen.corpus = [...list, ...inputs.corpora];
  }
  if (inputs.servingTraces.length) {
    const col = (out.collect ??= {});
    const list = Array.isArray(col.traces) ? col.traces as unknown[] : defaults.traces;
    col.traces = [
      ...list,
      ...inputs.servingTraces.map(({ source: s, path }) => ({
        name: s.name,
        path,
        format: s.format,
        ...(s.limit !== undefined ? { limit: s.limit } : {}),
        ...(s.rate !== undefined ? { rate: s.rate } : {}),
        ...(s.seed !== undefined ? { seed: s.seed } : {}),
        ...(s.blockTokens !== undefined ? { blockTokens: s.blockTokens } : {}),
      })),
    ];
  }
  return out;
}

/** What the pipeline did this night. */
export interface NightRun {
  ok: boolean;
  reports: StageReport[];
  stoppedAt?: string;
  /** Per stage, the ids of the cells that ran this night (not taken from the store). */
  ran: Record<string, string[]>;
  /** The params the night ran with: the profile, its overrides and the night's inputs. */
  params: Profile;
}

/** Runs every stage on the night's profile; the judge processes are closed before it returns. */
export async function runNightPipeline(opts: {
  root: string;
  store: Store;
  /** The profile with the sources' `set` overrides applied. */
  profile: Profile;
  profileShown: string;
  sets: string[];
  setsShown: string;
  inputs: NightInputs;
  guard: Interruption;
  log: (line: string) => void;
}): Promise<NightRun> {
  const stages = await loadStages("all");
  checkSetKeys(opts.sets, stages, opts.setsShown);
  const params = withInputs(opts.profile, opts.inputs, inputDefaults(stages));
  const startedOn = new Date().toISOString();
  try {
    const r = await runPipeline({
      root: opts.root,
      store: opts.store,
      stages,
      rawParams: params,
      paramsSource: opts.profileShown,
      paramOverrides: [],
      signal: opts.guard.signal,
      log: opts.log,
    });
    return { ...r, ran: cellsRanSince(opts.store, STAGE_NAMES, startedOn), params };
  } catch (e) {
    if (e instanceof PipelineError) throw new RefreshInputError(e.message);
    throw e;
  } finally {
    await closeSharedSessions();
  }
}

/** Per stage, the cells of its latest run that started at or after `since` (ISO time). */
export function cellsRanSince(
  store: Store,
  stages: string[],
  since: string,
): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const stage of stages) {
    const run = store.readRun(stage);
    const ids = (run?.cells ?? []).filter((c) => {
      const rec = store.get(stage, c.key)?.record;
      const t = (rec?.provenance?.timings as { startedOn?: string } | undefined)?.startedOn;
      return t !== undefined && t >= since;
    }).map((c) => c.id);
    if (ids.length) out[stage] = ids;
  }
  return out;
}
