// build.mjs bundles src/ with the pinned npm packages into
// ../assets/playground.js, the one script of the playground page (the
// gateway embeds it; `go build` needs no npm). Run it through build.sh
// (`make playground`), which installs the packages from package-lock.json
// first.
//
// The bundle's header records a digest of its inputs (sourcesDigest below;
// the gateway's playground tests recompute it), so a source changed without
// a rebuild fails the tests rather than shipping a stale page.

import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "assets", "playground.js");

// sourcesDigest: sha256 over lines "<sha256 of file>  <path>\n" of
// package-lock.json, build.mjs and every file of src/, in byte order of
// their paths.
export function sourcesDigest() {
  const files = ["build.mjs", "package-lock.json", ...readdirSync(join(here, "src")).map((f) => "src/" + f)].sort();
  let list = "";
  for (const f of files) {
    list += createHash("sha256").update(readFileSync(join(here, f))).digest("hex") + "  " + f + "\n";
  }
  return createHash("sha256").update(list).digest("hex");
}

const result = await build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  charset: "utf8",
  legalComments: "none",
  metafile: true,
  write: false,
});

// The packages the bundle holds, with their licences, named in its header.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (!m || pkgs.has(m[1])) continue;
  const meta = JSON.parse(readFileSync(join(here, "node_modules", m[1], "package.json"), "utf8"));
  pkgs.set(m[1], meta.version + " (" + meta.license + ")");
}
const names = [...pkgs.keys()].sort();

// Their licence texts (all MIT today) go at the end of the bundle, each text
// once with the packages it covers, as the licences ask.
const texts = new Map();
for (const n of names) {
  const file = readdirSync(join(here, "node_modules", n)).find((f) => /^LICEN[CS]E/i.test(f));
  if (!file) throw new Error(n + " ships no licence file");
  const text = readFileSync(join(here, "node_modules", n, file), "utf8").trim();
  texts.set(text, [...(texts.get(text) || []), n]);
}
let notices = "\n/*\n * Licences of the bundled packages.\n";
for (const [text, who] of texts) {
  notices += " *\n * " + who.join(", ") + ":\n *\n" + text.replace(/\*\//g, "* /").split("\n").map((l) => (" * " + l).trimEnd()).join("\n") + "\n";
}
notices += " */\n";

const header = [
  "// GENERATED FILE: do not edit. Built by gateway/playground/web/build.mjs",
  "// (make playground) from gateway/playground/web/src and the npm packages",
  "// pinned in gateway/playground/web/package-lock.json, bundled and minified",
  "// by esbuild. The gateway embeds it and inlines it into the page at GET /.",
  "// Bundled packages:",
  ...names.map((n) => "//   " + n + " " + pkgs.get(n)),
  "// sources-sha256: " + sourcesDigest(),
  "",
].join("\n");

// The page inlines the script in a <script> element: a "</script" inside it
// would end the element early, and "<!--" would change how the HTML parser
// reads the rest of it.
const code = result.outputFiles[0].text + notices;
if (/<\/script|<!--/i.test(code)) {
  throw new Error("the bundle contains </script or <!--; it cannot be inlined");
}
writeFileSync(out, header + code);
console.log("wrote " + relative(process.cwd(), out) + " (" + (header.length + code.length) + " bytes, " + names.length + " packages)");
