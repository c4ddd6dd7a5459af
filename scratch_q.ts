import { DuckDBInstance } from "@duckdb/node-api";
const inst = await DuckDBInstance.create(Deno.args[0], { access_mode: "READ_ONLY" });
const c = await inst.connect();
for (const q of Deno.args.slice(1)) {
  const r = await c.runAndReadAll(q);
  console.log(JSON.stringify(r.getRowObjectsJson(), null, 0).slice(0, 8000));
}
