#!/usr/bin/env node
// End-to-end test of `nanomlp serve` (CTest: e2e_draw_digit). Trains a model for one epoch on
// real MNIST, starts the server on a free port, opens the page in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core: no browser is downloaded), draws MNIST test
// digits on the canvas with the mouse, row by row along the runs of ink, and checks that the
// page shows the right class. Saves a screenshot of the page.
//
//   node tests/e2e/draw.mjs [--nanomlp BUILD/nanomlp] [--out BUILD] [--digits 2,1,0]
//
// Data: $NANOMLP_DATA, else ../shared/data beside the source tree, else ./data; without MNIST
// the test is skipped (exit 77). playwright-core is installed into tests/e2e/node_modules with
// `npm ci` (package-lock.json) on the first run.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const sourceRoot = path.resolve(here, '..', '..');
const SKIP = 77;

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const nanomlp = path.resolve(option('nanomlp', path.join(sourceRoot, 'build', 'nanomlp')));
const outDir = path.resolve(option('out', path.join(sourceRoot, 'build')));
const digits = option('digits', '2,1,0').split(',').map(Number);
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshotPath = path.join(outDir, 'serve-screenshot.png');

const log = (...a) => console.log('e2e:', ...a);

// ---- MNIST ------------------------------------------------------------------------------------

function dataRoot() {
  const candidates = [
    process.env.NANOMLP_DATA,
    path.join(sourceRoot, '..', 'shared', 'data'),
    path.join(sourceRoot, 'data'),
  ].filter(Boolean);
  return candidates.find((c) =>
    ['train-images-idx3-ubyte.gz', 'train-images-idx3-ubyte'].some((f) =>
      fs.existsSync(path.join(c, 'mnist', f))));
}

function readIdx(file) {
  for (const name of [`${file}.gz`, file]) {
    if (fs.existsSync(name)) {
      const bytes = fs.readFileSync(name);
      return name.endsWith('.gz') ? zlib.gunzipSync(bytes) : bytes;
    }
  }
  throw new Error(`missing ${file}(.gz)`);
}

function testDigits(root, indices) {
  const images = readIdx(path.join(root, 'mnist', 't10k-images-idx3-ubyte'));
  const labels = readIdx(path.join(root, 'mnist', 't10k-labels-idx1-ubyte'));
  if (images.readUInt32BE(0) !== 0x803 || labels.readUInt32BE(0) !== 0x801) {
    throw new Error('bad IDX magic numbers');
  }
  return indices.map((i) => ({
    index: i,
    label: labels[8 + i],
    pixels: Array.from(images.subarray(16 + 784 * i, 16 + 784 * (i + 1))),
  }));
}

// ---- the server -------------------------------------------------------------------------------

function startServer(model) {
  return new Promise((resolve, reject) => {
    const child = spawn(nanomlp, ['serve', '--model', model, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`no URL from nanomlp serve:\n${stdout}${stderr}`)),
      15000);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = stdout.match(/listening on (http:\/\/[^\s]+\/)/);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], output: () => stdout, log: () => stderr });
      }
    });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nanomlp serve exited (${code}):\n${stdout}${stderr}`));
    });
  });
}

function stopServer(server) {
  return new Promise((resolve) => {
    if (server.child.exitCode !== null) {
      resolve(server.child.exitCode);
      return;
    }
    const kill = setTimeout(() => server.child.kill('SIGKILL'), 10000);
    server.child.removeAllListeners('exit');
    server.child.on('exit', (code, signal) => {
      clearTimeout(kill);
      resolve(signal ? signal : code);
    });
    server.child.kill('SIGTERM');
  });
}

// ---- drawing ----------------------------------------------------------------------------------

// Traces the ink of a 28x28 MNIST digit on the pad: one stroke per run of bright pixels in each
// row, scaled to the pad's size on screen (the page's brush is thick enough to join the rows).
async function drawDigit(page, pixels) {
  const box = await page.locator('#pad').boundingBox();
  const s = box.width / 28;
  const at = (x, y) => [box.x + (x + 0.5) * s, box.y + (y + 0.5) * s];
  let strokes = 0;
  for (let y = 0; y < 28; y += 1) {
    let x = 0;
    while (x < 28) {
      if (pixels[y * 28 + x] < 128) {
        x += 1;
        continue;
      }
      const x0 = x;
      while (x < 28 && pixels[y * 28 + x] >= 128) x += 1;
      const x1 = x - 1;
      await page.mouse.move(...at(x0, y));
      await page.mouse.down();
      await page.mouse.move(...at(x1, y), { steps: Math.max(2, x1 - x0) });
      await page.mouse.up();
      strokes += 1;
    }
  }
  return strokes;
}

// Waits until the page shows the answer for everything drawn so far.
async function settled(page) {
  await page.waitForFunction(() => {
    const d = document.body.dataset;
    return d.state === 'idle' && d.shown === d.strokes;
  }, null, { timeout: 15000 });
}

// ---- main -------------------------------------------------------------------------------------

async function main() {
  const root = dataRoot();
  if (!root) {
    log('SKIPPED: no MNIST data (set NANOMLP_DATA or run `nanomlp download mnist`)');
    return SKIP;
  }
  if (!fs.existsSync(nanomlp)) throw new Error(`no nanomlp binary at ${nanomlp}`);
  if (!fs.existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath} (scripts/setup-deps.sh test installs it)`);
  }
  if (!fs.existsSync(path.join(here, 'node_modules', 'playwright-core', 'package.json'))) {
    log('installing playwright-core with npm ci (tests/e2e/package-lock.json)');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--prefix', here], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' },
    });
  }
  const { chromium } = await import(
    pathToFileURL(path.join(here, 'node_modules', 'playwright-core', 'index.mjs')).href);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nanomlp-e2e-'));
  const model = path.join(tmp, 'model.safetensors');
  let server = null;
  let context = null;
  try {
    execFileSync(nanomlp, ['train', '--data', root, '--epochs', '1', '--threads', '2', '--quiet',
      '--out', model], { stdio: ['ignore', 'pipe', 'inherit'] });
    const samples = testDigits(root, digits);
    server = await startServer(model);
    log(`server at ${server.url}`);

    const profile = path.join(tmp, 'profile'); // a new, empty user data dir
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1000, height: 820 },
      deviceScaleFactor: 1,
      colorScheme: 'light',
    });
    const page = context.pages()[0] || (await context.newPage());
    const problems = [];
    const origin = new URL(server.url).origin;
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('data:')) problems.push(`request to ${u}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });

    await page.goto(server.url);
    await page.waitForFunction(
      () => document.getElementById('model-line').textContent.includes('parameters'));
    const bars = await page.locator('#bars li').count();
    if (bars !== 10) throw new Error(`expected 10 probability bars, found ${bars}`);

    const failures = [];
    for (const [n, sample] of samples.entries()) {
      if (n > 0) {
        await page.click('#clear');
        await settled(page);
      }
      const t0 = Date.now();
      const strokes = await drawDigit(page, sample.pixels);
      await settled(page);
      const shown = (await page.locator('#prediction').textContent()).trim();
      const confidence = (await page.locator('#confidence').textContent()).trim();
      const ok = shown === String(sample.label);
      log(`test image ${sample.index} (a ${sample.label}): ${strokes} strokes in ` +
        `${Date.now() - t0} ms, the page shows ${shown} (${confidence}) ${ok ? 'ok' : 'WRONG'}`);
      if (!ok) failures.push(`test image ${sample.index}: expected ${sample.label}, shown ${shown}`);
    }
    // The 28x28 preview holds the image the network saw: ink in the middle.
    const previewInk = await page.evaluate(() => {
      const c = document.getElementById('seen');
      const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
      let sum = 0;
      for (let i = 0; i < d.length; i += 4) sum += d[i];
      return sum;
    });
    if (previewInk === 0) failures.push('the 28x28 preview is empty');

    // The model summary (GET /api/model) is on the page, folded: open it for the screenshot.
    await page.click('.model-card summary');
    const summary = await page.locator('#summary').textContent();
    if (!summary.includes('total:')) failures.push(`no model summary on the page: ${summary}`);
    fs.mkdirSync(outDir, { recursive: true });
    await page.waitForTimeout(300); // the bars' width transition
    await page.screenshot({ path: screenshotPath, fullPage: true });
    log(`screenshot: ${screenshotPath}`);
    await context.close();
    context = null;

    const code = await stopServer(server);
    const requests = (server.log().match(/^POST \/api\/predict 200 /gm) || []).length;
    log(`server: ${requests} predictions answered, exit ${code} after SIGTERM`);
    server = null;
    if (code !== 0) failures.push(`nanomlp serve exited with ${code} on SIGTERM`);
    if (requests === 0) failures.push('no successful /api/predict request in the server log');
    failures.push(...problems);
    if (failures.length) {
      for (const f of failures) console.error(`e2e: FAILED: ${f}`);
      return 1;
    }
    log('passed');
    return 0;
  } finally {
    if (context) await context.close().catch(() => {});
    if (server) await stopServer(server);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const watchdog = setTimeout(() => {
  console.error('e2e: FAILED: timed out after 180 s');
  process.exit(1);
}, 180000);
watchdog.unref();

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`e2e: FAILED: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
