// Runs each exported ONNX model in ONNX Runtime (onnxruntime-node's CPU runtime) on the 10,000
// MNIST test images and compares it with what `nanomlp eval --probabilities` wrote for the same
// model: the same predicted class for every image, max |p_onnx - p_nanomlp| <= 1e-5 and the
// accuracy eval reported.
//
// Usage: node compare.mjs --data ROOT --dir DIR KIND...
// DIR holds KIND.onnx, KIND.npy and KIND.eval.json (eval --json) for every KIND; ROOT/mnist
// holds t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz). Prints one line per model
// and exits 1 if one differs.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import ort from 'onnxruntime-node';

const TOLERANCE = 1e-5;

function parse_args(argv) {
  const args = { data: '', dir: '', kinds: [] };
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--data') args.data = argv[++i];
    else if (argv[i] === '--dir') args.dir = argv[++i];
    else args.kinds.push(argv[i]);
  }
  if (!args.data || !args.dir || args.kinds.length === 0) {
    throw new Error('usage: node compare.mjs --data ROOT --dir DIR KIND...');
  }
  return args;
}

// An IDX file (http://yann.lecun.com/exdb/mnist/), gzipped or not: big-endian magic 0x0000080N
// (N dimensions), N big-endian uint32 sizes, then the unsigned bytes.
function read_idx(root, name) {
  const plain = path.join(root, 'mnist', name);
  const bytes = fs.existsSync(plain + '.gz') ? zlib.gunzipSync(fs.readFileSync(plain + '.gz'))
                                             : fs.readFileSync(plain);
  const magic = bytes.readUInt32BE(0);
  if ((magic & 0xffffff00) !== 0x00000800) throw new Error(`${plain}: not an IDX file`);
  const dims = [];
  for (let d = 0; d < (magic & 0xff); ++d) dims.push(bytes.readUInt32BE(4 + 4 * d));
  const offset = 4 + 4 * dims.length;
  return { dims, values: bytes.subarray(offset) };
}

// A float32 .npy (numpy.lib.format 1.0) of shape (rows, cols) in C order.
function read_npy(file) {
  const bytes = fs.readFileSync(file);
  const header_length = bytes.readUInt16LE(8);
  const header = bytes.subarray(10, 10 + header_length).toString('latin1');
  const shape = /'shape': \((\d+), (\d+)\)/.exec(header);
  if (!header.includes("'descr': '<f4'") || !header.includes("'fortran_order': False") || !shape) {
    throw new Error(`${file}: expected a C-order float32 matrix, header ${header.trim()}`);
  }
  const start = 10 + header_length;
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start,
                                                   bytes.byteOffset + bytes.length));
  return { rows: Number(shape[1]), cols: Number(shape[2]), data };
}

function argmax(values, offset, count) {
  let best = 0;
  for (let k = 1; k < count; ++k) {
    if (values[offset + k] > values[offset + best]) best = k;
  }
  return best;
}

// Runs one model and returns its line and whether it matched.
async function compare(kind, dir, pixels, labels, count) {
  const session = await ort.InferenceSession.create(path.join(dir, `${kind}.onnx`));
  const input = new ort.Tensor('float32', pixels, [count, 784]);
  const out = await session.run({ pixels: input });
  const expected = read_npy(path.join(dir, `${kind}.npy`));
  const p = out.probabilities;
  const K = expected.cols;
  const problems = [];
  if (expected.rows !== count) problems.push(`nanomlp wrote ${expected.rows} rows, not ${count}`);
  if (p.dims[0] !== count || p.dims[1] !== K || out.logits.dims[1] !== K) {
    problems.push(`ONNX outputs ${p.dims} and ${out.logits.dims}, expected [${count}, ${K}]`);
  }
  let max_diff = 0, mismatches = 0, correct = 0, worst = 0;
  for (let i = 0; problems.length === 0 && i < count; ++i) {
    for (let k = 0; k < K; ++k) {
      const d = Math.abs(p.data[i * K + k] - expected.data[i * K + k]);
      if (d > max_diff) [max_diff, worst] = [d, i];
    }
    const predicted = argmax(p.data, i * K, K);
    // The class of the ONNX probabilities, of the ONNX logits and of nanomlp's probabilities.
    if (predicted !== argmax(expected.data, i * K, K) ||
        predicted !== argmax(out.logits.data, i * K, K)) {
      ++mismatches;
    }
    if (predicted === labels[i]) ++correct;
  }
  if (mismatches > 0) problems.push(`${mismatches} images predicted differently`);
  // What `nanomlp eval --json` reported for the same model and test set.
  const reported = JSON.parse(fs.readFileSync(path.join(dir, `${kind}.eval.json`), 'utf8'));
  if (reported.accuracy !== correct / count) {
    problems.push(`ONNX accuracy ${correct / count}, nanomlp eval ${reported.accuracy}`);
  }
  if (!(max_diff <= TOLERANCE)) problems.push(`max |dp| ${max_diff} > ${TOLERANCE}`);
  const line = `${kind.padEnd(14)} max |p_onnx - p_nanomlp| = ${max_diff.toExponential(2)}` +
               ` (image ${worst}), argmax equal on ${count - mismatches}/${count},` +
               ` ONNX accuracy ${(100 * correct / count).toFixed(2)}%`;
  return { line: problems.length ? `${line}: FAIL: ${problems.join('; ')}` : line,
           ok: problems.length === 0 };
}

async function main() {
  const args = parse_args(process.argv.slice(2));
  const images = read_idx(args.data, 't10k-images-idx3-ubyte');
  const labels = read_idx(args.data, 't10k-labels-idx1-ubyte').values;
  const count = images.dims[0];
  if (images.dims[1] * images.dims[2] !== 784 || labels.length !== count) {
    throw new Error(`unexpected test set: images ${images.dims}, ${labels.length} labels`);
  }
  // The graph's input: each row the 784 pixels of one image in row-major order, divided by 255.
  const pixels = new Float32Array(count * 784);
  for (let i = 0; i < pixels.length; ++i) pixels[i] = images.values[i] / 255;
  let failed = 0;
  for (const kind of args.kinds) {
    const { line, ok } = await compare(kind, args.dir, pixels, labels, count);
    console.log(line);
    if (!ok) ++failed;
  }
  console.log(`onnxruntime-node ${ort.env.versions.node}: ${args.kinds.length - failed}/` +
              `${args.kinds.length} models match nanomlp eval`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
