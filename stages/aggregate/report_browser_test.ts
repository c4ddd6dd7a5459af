/**
 * The HTML report renders in headless Chromium (Debian's /usr/bin/chromium) without console
 * errors or page errors. Skipped, with the reason printed, when Chromium is absent. With
 * UPDATE_SCREENSHOT=1 it also refreshes docs/report-screenshot.png.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { AggregateParams } from "./params.ts";
import { runAggregate } from "./stage.ts";
import { assert, assertEquals } from "../../tests/assert.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
const ROOT = new URL("../../", import.meta.url).pathname;
const present = existsSync(CHROMIUM);
if (!present) {
  console.log(`SKIP report_browser_test: ${CHROMIUM} not found (apt-get install -y chromium)`);
}

Deno.test({
  name: "index.html renders in headless Chromium without console errors",
  ignore: !present,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = mkdtempSync(join(tmpdir(), "agg-html-"));
    const profile = mkdtempSync(join(tmpdir(), "chromium-profile-"));
    const fixture = Deno.env.get("REPORT_FIXTURE") ?? join(ROOT, "tests/fixtures/aggregate/basic");
    try {
      await runAggregate({
        fragments: [{ stage: "fixture", cellId: "basic", cellKey: "k", dir: fixture }],
        params: AggregateParams.parse({}),
        outDir: out,
        root: ROOT,
        log: () => {},
      });
      const ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
        viewport: { width: 1280, height: 1600 },
      });
      try {
        const page = await ctx.newPage();
        const errors: string[] = [];
        page.on("console", (m) => {
          if (m.type() === "error") errors.push(`console: ${m.text()}`);
        });
        page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
        await page.goto(`file://${join(out, "index.html")}`, { waitUntil: "load" });
        assertEquals(await page.title(), "tracepipe report: FlashInfer-Bench reproduction");
        assert(await page.locator("svg").count() >= 4, "charts are inline SVG");
        assert(await page.locator("#tbl-table_c_win_at_p_leaderboard tbody tr").count() === 2);
        assertEquals(errors, []);
        if (Deno.env.get("UPDATE_SCREENSHOT") === "1") {
          await page.screenshot({
            path: join(ROOT, "docs", "report-screenshot.png"),
            fullPage: false,
          });
        }
      } finally {
        await ctx.close();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(profile, { recursive: true, force: true });
    }
  },
});
