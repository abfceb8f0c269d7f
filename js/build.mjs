// Builds ../rldk_widget/static/widget.js: one self-contained ESM bundle (plotly core + scatter, CSS inlined).
import * as esbuild from "esbuild";
import { mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = resolve(here, "../rldk_widget/static/widget.js");
const watch = process.argv.includes("--watch");
const dev = watch || process.argv.includes("--dev");

// plotly's registry.js require()s maplibre-gl's stylesheet when a map trace is registered; we register
// scatter only, so replace every third-party stylesheet with an empty module (our own CSS is loaded as text).
const emptyThirdPartyCss = {
  name: "empty-third-party-css",
  setup(build) {
    build.onResolve({ filter: /\.css$/ }, (args) =>
      args.resolveDir.includes("node_modules") ? { path: args.path, namespace: "empty-css" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "empty-css" }, () => ({ contents: "", loader: "js" }));
  },
};

mkdirSync(dirname(outfile), { recursive: true });

const options = {
  entryPoints: [resolve(here, "src/widget.ts")],
  outfile,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020", "chrome90", "firefox90", "safari15"],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: "none",
  loader: { ".css": "text" },
  define: {
    "define.amd": "false", // VS Code's notebook renderer exposes an AMD define (anywidget#684, #717)
    global: "window", // plotly.js source expects a browserify-style `global`
    "process.env.NODE_ENV": '"production"',
  },
  plugins: [emptyThirdPartyCss],
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
  const kb = statSync(outfile).size / 1024;
  console.log(`widget.js: ${kb.toFixed(0)} KiB`);
}
