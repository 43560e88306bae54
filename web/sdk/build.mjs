#!/usr/bin/env node
// Build the self-contained npm package of the web SDK into web/sdk/dist/.
//
// fedge.js imports the demo page's own modules from ../static/js/shared/
// (that is how `fedge serve` serves it at /sdk/fedge.js, beside the page),
// and a package cannot reach outside its folder. This copies fedge.js and
// every shared module it needs (followed import by import) into dist/,
// fedge.js's imports rewritten to ./shared/NAME.js; the shared modules
// import each other as ./NAME.js and are copied as they are. No
// dependencies: Node's fs only. `npm pack` runs it (package.json's prepack).
//
//   node web/sdk/build.mjs        # writes web/sdk/dist/{fedge.js,shared/*.js}
//
// An import that leaves the shared folder, or names a file that is not
// there, stops the build with a message: the package would not load.

import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const sdk = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(sdk, "../static/js/shared");
const dist = path.join(sdk, "dist");
const FROM_SDK = "../static/js/shared/";
// The module specifier of a static import or re-export: `from "X"` on a line
// that starts the statement (import, export) or ends a multi-line one (}),
// and `import "X"`. The modules use no dynamic import().
const SPECIFIER = /^(\s*(?:(?:import|export)\b.*?\bfrom|\}\s*from|import)\s*)(["'])([^"']+)\2/gm;

// Comment lines (// ..., and the lines of /* ... */ blocks) show usage, not imports.
const COMMENT_LINE = /^\s*(\/\/|\/\*|\*)/;

function code(source) {
  return source
    .split("\n")
    .map((line) => (COMMENT_LINE.test(line) ? "" : line))
    .join("\n");
}

function specifiers(source) {
  return [...code(source).matchAll(SPECIFIER)].map((match) => match[3]);
}

class BuildError extends Error {}

async function readModule(file) {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    throw new BuildError(`${path.relative(sdk, file)} is imported but cannot be read: ${error.message}`);
  }
}

/** The shared modules fedge.js needs, by file name, following their own imports. */
async function sharedClosure(entrySource) {
  const pending = [];
  for (const spec of specifiers(entrySource)) {
    if (!spec.startsWith(FROM_SDK) || spec.slice(FROM_SDK.length).includes("/")) {
      throw new BuildError(`fedge.js imports ${spec}; the package carries only ${FROM_SDK}*.js`);
    }
    pending.push(spec.slice(FROM_SDK.length));
  }
  const found = new Map();
  while (pending.length) {
    const name = pending.pop();
    if (found.has(name)) continue;
    const source = await readModule(path.join(shared, name));
    found.set(name, source);
    for (const spec of specifiers(source)) {
      if (!/^\.\/[\w.-]+\.js$/.test(spec)) {
        throw new BuildError(`shared/${name} imports ${spec}; a packaged module imports only ./NAME.js beside it`);
      }
      pending.push(spec.slice(2));
    }
  }
  return found;
}

export async function build() {
  const entry = await readModule(path.join(sdk, "fedge.js"));
  const modules = await sharedClosure(entry);
  await rm(dist, { recursive: true, force: true });
  await mkdir(path.join(dist, "shared"), { recursive: true });
  const rewritten = entry
    .split("\n")
    .map((line) =>
      COMMENT_LINE.test(line)
        ? line
        : line.replace(SPECIFIER, (whole, head, quote, spec) =>
            spec.startsWith(FROM_SDK) ? `${head}${quote}./shared/${spec.slice(FROM_SDK.length)}${quote}` : whole,
          ),
    )
    .join("\n");
  await writeFile(path.join(dist, "fedge.js"), rewritten);
  for (const name of [...modules.keys()].sort()) await copyFile(path.join(shared, name), path.join(dist, "shared", name));
  return ["fedge.js", ...[...modules.keys()].sort().map((name) => `shared/${name}`)];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const files = await build();
    console.log(`web/sdk/dist: ${files.join(", ")}`);
  } catch (error) {
    console.error(`fedge sdk build: ${error.message}`);
    process.exitCode = 1;
  }
}
