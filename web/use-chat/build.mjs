// Bundles the useChat test page (app.jsx, React and the AI SDK from web/node_modules)
// into the directory given as the first argument: index.html and app.js, which the browser
// test serves on the gateway's origin under /use-chat/. `node use-chat/build.mjs <dir>`.
import { copyFile, mkdir } from "node:fs/promises";
import { build } from "esbuild";

const out = process.argv[2];
if (!out) throw new Error("usage: node use-chat/build.mjs <output directory>");
await mkdir(out, { recursive: true });
await build({
  entryPoints: [new URL("./app.jsx", import.meta.url).pathname],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  outfile: `${out}/app.js`,
  logLevel: "warning",
});
await copyFile(new URL("./index.html", import.meta.url), `${out}/index.html`);
