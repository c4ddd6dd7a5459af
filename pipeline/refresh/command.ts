/**
 * `tp refresh`: one night. fetch (pin every upstream to an exact revision, write the lock) →
 * validate (a broken upstream stops the night before anything is judged) → reproduce (only new or
 * changed cells run) → snapshot (the night's report, tables and traces, in a staging folder) →
 * changelog (against the last good snapshot) → publish (rename, then move `latest`). Any failure
 * leaves the last good snapshot published and exits non-zero with the reason.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type AnyStage,
  describeHolder,
  exitCodeFor,
  formatDiagnostic,
  type Interruption,
  REPO_ROOT,
  sha256,
  Store,
  StoreLockedError,
  superviseRun,
} from "../engine/mod.ts";
import { loadStages } from "../../stages/mod.ts";
import { type Changelog, diffNights, renderChangelog } from "./changelog.ts";
import {
  type FetchedServingTrace,
  type FetchedTraceSet,
  fetchServingTrace,
  fetchTraceSet,
  underRoot,
} from "./fetch.ts";
import { applySets, type Profile, readProfile, runNightPipeline } from "./night.ts";
import {
  latestSnapshot,
  linkUnchanged,
  newStaging,
  publishSnapshot,
  removeStaleStaging,
  shownPath,
  snapshotName,
} from "./snapshot.ts";
import {
  loadLock,
  loadSources,
  type Lock,
  lockPathFor,
  RefreshInputError,
  type Sources,
} from "./sources.ts";
import { collectNightState, type NightState } from "./state.ts";
import { checkServingTrace, checkTraceSet, runDefinitionNames } from "./validate.ts";

/** The usage lines of `refresh`, for the CLI's help. */
export const REFRESH_USAGE =
  `  refresh               one nightly dataset refresh: fetch the pinned upstreams, validate, reproduce
                          (new cells only), snapshot, changelog, publish (see refresh/sources.json)
    --sources FILE        the sources file (default refresh/sources.json); its lock is written beside it
    --lock FILE           re-run a night exactly from its lock (a snapshot's sources.lock.json)
    --snapshots DIR       where snapshots and \`latest\` go (default: the sources' "snapshots")
    --cache DIR           fetched upstreams (default .tracepipe/refresh-cache)
    --wait                wait for another run holding the store instead of refusing`;

/** What one night reads: the sources (or a lock's), with the lock entries to re-read, if any. */
interface Plan {
  sources: Sources;
  shown: string;
  lock: Lock | null;
  sourcesPath: string | null;
}

const fromRoot = (p: string) => (isAbsolute(p) ? p : resolve(REPO_ROOT, p));

/** The sources of a re-run: the lock's own entries (exact revisions) and settings. */
function sourcesOfLock(lock: Lock): Sources {
  return {
    traceSets: lock.traceSets.map((t) => ({
      name: t.name,
      git: t.git,
      dir: t.dir,
      ref: t.ref ?? "main",
      path: t.path,
    })),
    servingTraces: lock.servingTraces,
    profile: lock.profile.path,
    set: lock.set,
    snapshots: lock.snapshots,
    changelog: lock.changelog,
  };
}

async function tracepipeRevision(): Promise<Lock["tracepipe"]> {
  const run = async (args: string[]) => {
    try {
      const r = await new Deno.Command("git", {
        args: ["-C", REPO_ROOT, ...args],
        stdout: "piped",
        stderr: "null",
      }).output();
      return r.success ? new TextDecoder().decode(r.stdout).trim() : null;
    } catch {
      return null;
    }
  };
  const commit = await run(["rev-parse", "HEAD"]);
  const status = await run(["status", "--porcelain", "--untracked-files=no"]);
  return { commit, dirty: status === null || status !== "" };
}

/** Fetches every upstream (re-reading the lock's revisions on a re-run). */
async function fetchAll(plan: Plan, cache: string, log: (l: string) => void) {
  const ctx = { root: REPO_ROOT, cache, shown: plan.shown, log };
  const traceSets: FetchedTraceSet[] = [];
  for (const [i, src] of plan.sources.traceSets.entries()) {
    traceSets.push(await fetchTraceSet(src, i, ctx, plan.lock?.traceSets[i]));
  }
  const serving: FetchedServingTrace[] = [];
  for (const [i, src] of plan.sources.servingTraces.entries()) {
    serving.push(await fetchServingTrace(src, i, ctx));
  }
  return { traceSets, serving };
}

/** Validates every upstream; throws (the night stops) on the first broken one, listing its problems. */
async function validateAll(
  fetched: Awaited<ReturnType<typeof fetchAll>>,
  profile: Profile,
  log: (l: string) => void,
): Promise<void> {
  const roots = (profile.definitions?.roots as string[] | undefined) ?? ["data"];
  const runDefs = runDefinitionNames(REPO_ROOT, roots);
  const checks = [
    ...await Promise.all(fetched.traceSets.map(async (t) => ({
      name: t.locked.name,
      check: await checkTraceSet(
        t.dir,
        `${t.locked.name}@${(t.locked.commit ?? t.locked.digest).slice(0, 12)}`,
        runDefs,
      ),
    }))),
    ...fetched.serving.map((s) => ({
      name: s.locked.name,
      check: checkServingTrace(s.file, s.locked.format, s.locked.name, s.locked.limit),
    })),
  ];
  for (const { name, check } of checks) {
    if (check.tolerated.length) {
      log(
        `validate: ${name}: ${check.tolerated.length} problems left to generate (it judges or resolves them):`,
      );
      for (const d of check.tolerated.slice(0, 3)) log(`  ${formatDiagnostic(d)}`);
    }
    if (!check.errors.length) {
      log(`validate: ${check.summary || name}: ok`);
      continue;
    }
    const shown = check.errors.slice(0, 20).map(formatDiagnostic);
    if (check.errors.length > 20) shown.push(`… ${check.errors.length - 20} more`);
    throw new RefreshInputError(
      `upstream ${name} is broken (${check.errors.length} errors); the night stops before anything is judged:\n` +
        shown.join("\n"),
      check.errors,
    );
  }
}

/** The lock of this night: the sources with every input's exact revision. */
async function lockOf(
  plan: Plan,
  fetched: Awaited<ReturnType<typeof fetchAll>>,
  profileText: string,
): Promise<Lock> {
  return {
    format: "tracepipe/refresh-lock-v1",
    sources: plan.lock?.sources ?? plan.shown,
    resolvedAt: new Date().toISOString(),
    profile: { path: plan.sources.profile, sha256: sha256(profileText) },
    set: plan.sources.set,
    snapshots: plan.sources.snapshots,
    changelog: plan.sources.changelog,
    traceSets: fetched.traceSets.map((t) => t.locked),
    servingTraces: fetched.serving.map((s) => s.locked),
    tracepipe: await tracepipeRevision(),
  };
}

/** Everything a night writes into its snapshot besides the reports. */
interface NightRecord {
  lock: Lock;
  params: Profile;
  state: NightState;
  changelog: Changelog;
  log: string[];
}

/** Lets every stage publish its latest cells into the staging folder (aggregate: reports/). */
async function publishStages(
  stages: AnyStage[],
  store: Store,
  staging: string,
  log: (l: string) => void,
) {
  for (const stage of stages) {
    if (!stage.publish) continue;
    const cells = store.lastResults(stage.name);
    if (cells?.length) await stage.publish({ cells, root: staging, log });
  }
}

function writeRecord(staging: string, r: NightRecord): void {
  const json = (v: unknown) => JSON.stringify(v, null, 2) + "\n";
  writeFileSync(join(staging, "sources.lock.json"), json(r.lock));
  writeFileSync(join(staging, "profile.json"), json(r.params));
  writeFileSync(join(staging, "night.json"), json(r.state));
  writeFileSync(join(staging, "changelog.json"), json(r.changelog));
  writeFileSync(join(staging, "CHANGELOG.md"), renderChangelog(r.changelog));
  writeFileSync(join(staging, "night.log"), r.log.join("\n") + "\n");
}

/** The options of `refresh`. */
function parseRefreshArgs(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      sources: { type: "string" },
      lock: { type: "string" },
      snapshots: { type: "string" },
      cache: { type: "string" },
      wait: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.sources && values.lock) {
    throw new RefreshInputError("refresh: give --sources or --lock, not both");
  }
  let plan: Plan;
  if (values.lock) {
    const path = resolve(values.lock);
    const lock = loadLock(path, shownPath(path));
    plan = { sources: sourcesOfLock(lock), shown: shownPath(path), lock, sourcesPath: null };
  } else {
    const path = resolve(values.sources ?? join(REPO_ROOT, "refresh", "sources.json"));
    plan = {
      sources: loadSources(path, shownPath(path)),
      shown: shownPath(path),
      lock: null,
      sourcesPath: path,
    };
  }
  return {
    plan,
    snapshots: resolve(values.snapshots ?? fromRoot(plan.sources.snapshots)),
    cache: resolve(values.cache ?? join(REPO_ROOT, ".tracepipe", "refresh-cache")),
    wait: values.wait!,
  };
}

/** One night, holding the store lock throughout; returns the exit code. */
async function night(
  opts: ReturnType<typeof parseRefreshArgs>,
  store: Store,
  guard: Interruption,
  lines: string[],
): Promise<number> {
  const log = (l: string) => (lines.push(l), console.log(l));
  const startedAt = new Date().toISOString();
  const { plan } = opts;
  const fetched = await fetchAll(plan, opts.cache, log);
  const profilePath = fromRoot(plan.sources.profile);
  const { profile: raw, text } = readProfile(profilePath, shownPath(profilePath));
  if (plan.lock && plan.lock.profile.sha256 !== sha256(text)) {
    throw new RefreshInputError(
      `${plan.shown}: $.profile.sha256: ${shownPath(profilePath)} changed since the locked night ` +
        `(sha256 ${sha256(text).slice(0, 12)}, locked ${
          plan.lock.profile.sha256.slice(0, 12)
        }): it cannot be re-run exactly`,
    );
  }
  const lock = await lockOf(plan, fetched, text);
  if (plan.sourcesPath) {
    writeFileSync(lockPathFor(plan.sourcesPath), JSON.stringify(lock, null, 2) + "\n");
    log(`lock: ${shownPath(lockPathFor(plan.sourcesPath))}`);
  }
  const profile = applySets(raw, plan.sources.set, plan.shown);
  await validateAll(fetched, profile, log);

  const r = await runNightPipeline({
    root: REPO_ROOT,
    store,
    profile,
    profileShown: shownPath(profilePath),
    sets: plan.sources.set,
    setsShown: plan.shown,
    inputs: {
      corpora: fetched.traceSets.map((t) => t.dir),
      servingTraces: fetched.serving.map((s) => ({
        source: s.locked,
        path: underRoot(REPO_ROOT, s.file),
      })),
    },
    guard,
    log,
  });
  const sig = guard.stoppedBy();
  if (sig) {
    console.error(`error: the night was interrupted by ${sig}; nothing was published`);
    return exitCodeFor(sig);
  }
  if (!r.ok) {
    const failed = r.reports.flatMap((x) => x.failed.map((f) => `${x.stage} ${f.id}: ${f.error}`));
    console.error(
      `error: ${failed.length} cells failed; nothing was published (finished cells are kept):\n` +
        failed.slice(0, 10).join("\n"),
    );
    return 1;
  }
  return await snapshotNight(opts, store, { startedAt, lock, params: r.params, ran: r.ran, lines });
}

/** Assembles, compares and publishes the night's snapshot; the staging folder goes on any failure. */
async function snapshotNight(
  opts: ReturnType<typeof parseRefreshArgs>,
  store: Store,
  n: {
    startedAt: string;
    lock: Lock;
    params: Profile;
    ran: Record<string, string[]>;
    lines: string[];
  },
): Promise<number> {
  const root = opts.snapshots;
  removeStaleStaging(root);
  const staging = newStaging(root);
  try {
    const stages = await loadStages("all");
    await publishStages(stages, store, staging, (l) => n.lines.push(l));
    const prevRef = latestSnapshot(root);
    const prev = prevRef ? readNight(prevRef.dir) : null;
    const name = snapshotName(root, n.startedAt.slice(0, 10));
    const revisions = Object.fromEntries([
      ...n.lock.traceSets.map((t) => [t.name, t.commit ?? t.digest]),
      ...n.lock.servingTraces.map((s) => [s.name, s.sha256]),
    ]);
    const state = collectNightState({
      store,
      snapshot: name,
      startedAt: n.startedAt,
      reportsDir: join(staging, "reports"),
      ran: n.ran,
      revisions,
      prev,
    });
    const changelog = diffNights(prev, state, opts.plan.sources.changelog.minRelChange);
    writeRecord(staging, { lock: n.lock, params: n.params, state, changelog, log: n.lines });
    if (prevRef) linkUnchanged(prevRef.dir, staging);
    const published = publishSnapshot(root, staging, name);
    console.log("");
    console.log(renderChangelog(changelog));
    console.log(
      `published ${shownPath(published.dir)} (${shownPath(join(root, "latest"))} → ${name}); ` +
        `changelog: ${shownPath(join(published.dir, "CHANGELOG.md"))}; the night took ${
          ((Date.now() - Date.parse(n.startedAt)) / 1000).toFixed(1)
        } s`,
    );
    return 0;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The state a published snapshot recorded, or null when it has none readable. */
function readNight(dir: string): NightState | null {
  try {
    return JSON.parse(readFileSync(join(dir, "night.json"), "utf8")) as NightState;
  } catch {
    return null;
  }
}

/**
 * `tp refresh`: returns the exit code: 0 published; 1 cells failed or the snapshot could not be
 * written; 2 bad sources, lock, profile or upstream (nothing judged); 3 the store is locked;
 * 130/143 interrupted. In every case but 0 the last good snapshot stays published.
 */
export async function refreshCommand(
  args: string[],
  storeDir: string,
  command: string,
): Promise<number> {
  let guard: Interruption | null = null;
  try {
    const opts = parseRefreshArgs(args);
    guard = superviseRun((l) => console.error(l));
    const store = new Store(storeDir);
    mkdirSync(opts.cache, { recursive: true });
    const release = await store.lock({
      wait: opts.wait,
      command,
      signal: guard.signal,
      onWait: (h) =>
        console.error(`waiting for the store ${store.root}, held by ${describeHolder(h)}`),
    });
    try {
      return await night(opts, store, guard, []);
    } finally {
      release();
    }
  } catch (e) {
    const kept = "the last good snapshot stays published";
    if (e instanceof RefreshInputError) {
      console.error(`error: ${e.message}\nrefresh: the night failed; ${kept}`);
      return 2;
    }
    if (e instanceof StoreLockedError) {
      console.error(`error: ${e.message}`);
      return guard?.stoppedBy() ? exitCodeFor(guard.stoppedBy()!) : 3;
    }
    if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`error: refresh: ${(e as Error).message}`);
      return 2;
    }
    console.error(`error: refresh: ${(e as Error).message}\nrefresh: the night failed; ${kept}`);
    return 1;
  } finally {
    guard?.dispose();
  }
}
