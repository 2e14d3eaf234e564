// Copies the browser builds of vega, vega-lite and vega-embed, with their licenses, from
// node_modules into the package's static folder: the dashboard page loads them from there, so
// it works without internet. Run by `jlpm build:vendor` (part of `jlpm build` and `build:prod`).
import { copyFileSync, mkdirSync } from 'node:fs';
import { stdout } from 'node:process';
import { join } from 'node:path';

const target = join('jupyter_telemetry_ext', 'static', 'vendor');
mkdirSync(target, { recursive: true });
for (const [name, build] of [
  ['vega', 'build/vega.min.js'],
  ['vega-lite', 'build/vega-lite.min.js'],
  ['vega-embed', 'build/vega-embed.min.js']
]) {
  const root = join('node_modules', name);
  copyFileSync(join(root, build), join(target, `${name}.min.js`));
  copyFileSync(join(root, 'LICENSE'), join(target, `${name}.LICENSE.txt`));
}
stdout.write(`copied vega, vega-lite and vega-embed into ${target}\n`);
