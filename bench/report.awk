# Turns the tab-separated records of one bench/run.sh run into the results table.
#   awk -F '\t' -v format=md   -f bench/report.awk raw.tsv > results.md
#   awk -F '\t' -v format=json -f bench/report.awk raw.tsv > results.json
# Records (see bench_kernels.cpp, bench_train.cpp, numpy_mlp.py, torch_mlp.py, run.sh):
#   kv     key value
#   sgemm  case op impl threads M N K product GFLOP/s us cpu_us
#   kernel name calls_per_default_step us GB/s
#   step   case threads us
#   train  net batch threads s/epoch samples/s GFLOP/epoch passes images/pass test_accuracy cpu_share
#   eval   net threads seconds runs
# Plain POSIX awk (Debian's mawk is enough).

# Reference for "% of sgemm": the best rate, per thread count, among the large network's big
# products (every dimension >= 256), whichever implementation (nanomlp pool, OpenBLAS threads).
BEGIN {
  ref_case = "784-1024-1024-10/b256"; ref_min_dim = 256
  n_sgemm = 0; n_kernel = 0; n_step = 0; n_train = 0; n_eval = 0; n_kv = 0
}

$1 == "kv" {
  if (!($2 in kv)) kv_order[++n_kv] = $2
  kv[$2] = $3
  next
}
$1 == "sgemm" {
  key = $2 SUBSEP $3
  if (!(key in sg_seen)) { sg_seen[key] = 1; sg_rows[++n_sg_rows] = key }
  sg_case[key] = $2; sg_op[key] = $3; sg_mnk[key] = $6 "x" $7 "x" $8; sg_prod[key] = $9
  impl_t = $4 SUBSEP $5
  sg_gflops[key, impl_t] = $10; sg_us[key, impl_t] = $11; sg_cpu[key, impl_t] = $12
  if ($5 + 0 > max_threads) max_threads = $5 + 0
  if ($2 == ref_case && $6 >= ref_min_dim && $7 >= ref_min_dim && $8 >= ref_min_dim &&
      (!($5 in ref_gflops) || $10 + 0 > ref_gflops[$5])) {
    ref_gflops[$5] = $10 + 0; ref_what[$5] = $3 " " $6 "x" $7 "x" $8 " " $4
    ref_cpu[$5] = ($12 != "" && $11 > 0) ? $12 / $11 : -1
  }
  ++n_sgemm
  sgemm_rec[n_sgemm] = $0
  next
}
$1 == "kernel" { kernel_rec[++n_kernel] = $0; next }
$1 == "step" { step_us[$3] = $4; step_rec[++n_step] = $0; next }
$1 == "train" {
  train_rec[++n_train] = $0
  if ($4 + 0 == 1) train_t1[$2, $3] = $5
  if ($4 + 0 > max_threads) max_threads = $4 + 0
  next
}
$1 == "eval" { eval_rec[++n_eval] = $0; next }

# --- helpers -----------------------------------------------------------------------------------

function commas(x,    s, neg, out) {
  s = sprintf("%.0f", x)
  neg = ""
  if (substr(s, 1, 1) == "-") { neg = "-"; s = substr(s, 2) }
  out = ""
  while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
  return neg s out
}
function num(s) { return s ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
function jstr(s) {
  gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, " ", s)
  return "\"" s "\""
}
function jval(s) { return num(s) ? s + 0 : jstr(s) }
function has(k) { return (k in kv) && kv[k] != "" }
function get(k, dflt) { return has(k) ? kv[k] : dflt }
function fmt_s(x) {  # seconds, 3 significant digits
  if (x >= 100) return sprintf("%.0f", x)
  if (x >= 10) return sprintf("%.1f", x)
  if (x >= 1) return sprintf("%.2f", x)
  return sprintf("%.3f", x)
}
function fmt_g(x) { return x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x) }
function fmt_us(x) { return x >= 100 ? sprintf("%.0f", x) : (x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x)) }
function plural(n, word) { return n " " word ((n + 0 == 1) ? "" : "s") }
function pct(x) { return sprintf("%.0f%%", 100 * x) }
function cell_gflops(key, impl, t) {
  return ((key, impl SUBSEP t) in sg_gflops) ? fmt_g(sg_gflops[key, impl SUBSEP t]) : "-"
}
function best_python(prefix,    k, i, best, bt, t) {  # min over <prefix>.t<N>.epoch_seconds
  best = ""
  for (i = 1; i <= n_kv; ++i) {
    k = kv_order[i]
    if (index(k, prefix ".t") == 1 && k ~ /\.epoch_seconds$/) {
      t = substr(k, length(prefix) + 3); sub(/\.epoch_seconds$/, "", t)
      if (best == "" || kv[k] + 0 < best + 0) { best = kv[k]; bt = t }
    }
  }
  py_best_threads = bt
  return best
}

# --- derived figures ---------------------------------------------------------------------------

function derive(    i, f, t, gf, speed, step_sum, calls) {
  for (i = 1; i <= n_train; ++i) {
    split(train_rec[i], f, "\t")
    t = f[4] + 0
    gf = f[7] / f[5]
    tr_gflops[i] = gf
    tr_pct[i] = (t in ref_gflops) && ref_gflops[t] > 0 ? gf / ref_gflops[t] : -1
    tr_speedup[i] = ((f[2], f[3]) in train_t1) ? train_t1[f[2], f[3]] / f[5] : -1
    if (f[2] == "784-128-10" && f[3] == 64) {
      if (nano_best == "" || f[5] + 0 < nano_best + 0) { nano_best = f[5]; nano_best_t = t }
      nano_acc = f[10]; nano_epochs = f[8]
      default_epoch[t] = f[5]
    }
  }
  # One default step (784-128-10, batch 64): its products and element-wise kernels.
  for (i = 1; i <= n_sgemm; ++i) {
    split(sgemm_rec[i], f, "\t")
    # The first layer's products run sparse on MNIST (elementwise/sparse_* rows); only the
    # output layer's three products are GEMMs.
    if (f[2] == "784-128-10/b64" && f[4] == "nanomlp" && f[3] !~ /^l1\./) gemm_step_us[f[5] + 0] += f[11]
  }
  elem_step_us = 0
  for (i = 1; i <= n_kernel; ++i) {
    split(kernel_rec[i], f, "\t")
    elem_step_us += f[3] * f[4]
  }
}

# --- Markdown ----------------------------------------------------------------------------------

function markdown(    i, f, t, key, tl, load1, note, sp, steps, np, tp, sep) {
  tl = max_threads > 1 ? max_threads " threads" : "all threads"
  print "# nanomlp benchmark"
  print ""
  print "Reproduce with `make bench` (or `BUILD_DIR=build bash bench/run.sh`); see bench/README.md for what each column means."
  print ""
  print "| Machine | |"
  print "|---|---|"
  print "| CPU | " get("machine.cpu", "?") ", " get("machine.cores", "?") " cores usable |"
  print "| BLAS | " get("machine.blas", "?") " |"
  print "| Build | " get("build.compiler", "?") ", " get("build.isa", "?") ", asserts " get("build.asserts", "?") ", `" get("run.build_dir", "?") "` |"
  print "| System | " get("run.os", "?") ", Linux " get("run.kernel", "?") " |"
  print "| Run | " get("run.date", "?") ", commit " get("run.commit", "?") ", " fmt_s(get("run.seconds", 0)) " s in all |"
  load1 = get("run.load_start", "?")
  note = ""
  if (load1 + 0 > 0.5 * get("machine.cores", 1)) note = " **(other work was running: figures are noisy)**"
  print "| Load average (1 min) | " load1 " at start, " get("run.load_end", "?") " at end" note " |"
  print ""

  print "## Training (MNIST, 60,000 images per epoch, SGD lr 0.1, nanomlp::train)"
  print ""
  print "| Network | Batch | Threads | s / epoch | Samples / s | GFLOP / epoch | GFLOP/s | % of sgemm | Speed-up vs 1 thread | CPU share | Measured |"
  print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for (i = 1; i <= n_train; ++i) {
    split(train_rec[i], f, "\t")
    if (f[9] == 60000) {
      note = "median of " f[8] " epochs"
    } else {
      note = "median of " f[8] " passes over the first " commas(f[9]) " images (" pct(f[9] / 60000) " of an epoch), scaled to 60,000"
    }
    print "| " f[2] " | " f[3] " | " f[4] " | " fmt_s(f[5]) " | " commas(f[6]) " | " fmt_g(f[7]) " | " fmt_g(tr_gflops[i]) " | " \
      (tr_pct[i] >= 0 ? pct(tr_pct[i]) : "-") " | " (f[4] + 0 > 1 && tr_speedup[i] > 0 ? sprintf("%.2f×", tr_speedup[i]) : "") " | " (f[11] != "" ? pct(f[11]) : "-") " | " note " |"
  }
  print ""
  printf "%% of sgemm: achieved GFLOP/s over the best sgemm rate measured in this run, on the same number of threads, among the large network's products with every dimension ≥ %d:", ref_min_dim
  sep = " "
  for (t = 1; t <= max_threads; ++t) if (t in ref_gflops) { printf "%s%s GFLOP/s on %s (%s)", sep, fmt_g(ref_gflops[t]), plural(t, "thread"), ref_what[t]; sep = "; " }
  print "."
  print "GFLOP / epoch counts the dense products (the work the arithmetic of the step fixes). The 784-128-10 rows run the first layer sparse on MNIST (nanomlp/sparse.hpp) and skip the background pixels' share of that work, so their GFLOP/s is dense-equivalent and their % of sgemm can exceed 100%."
  if ((1 in ref_cpu) && ref_cpu[1] >= 0 && ref_cpu[1] < 0.9)
    printf "The 1-thread reference ran with only %s of a core (other work took the rest), so it understates the machine and the 1-thread %% figures are overstated.\n", pct(ref_cpu[1])
  if ((1 in default_epoch) && (max_threads in default_epoch) && max_threads > 1) {
    printf "\nSpeed-up of the default step (784-128-10, batch 64) from 1 to %s: %.2f× in training", tl, default_epoch[1] / default_epoch[max_threads]
    if ((1 in step_us) && (max_threads in step_us)) printf ", %.2f× for one step in isolation (bench_kernels step/)", step_us[1] / step_us[max_threads]
    print "."
  }
  print ""

  print "## sgemm (nanomlp::kernels::gemm at the shapes of the training step; GFLOP/s, median of the repetitions)"
  print ""
  print "| Network / batch | Product | M×N×K | µs, 1 thread | CPU share, 1 thread | 1 thread | " tl ", nanomlp pool | " tl ", OpenBLAS threads | pool / OpenBLAS |"
  print "|---|---|---|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= n_sg_rows; ++i) {
    key = sg_rows[i]
    sp = ""
    if (((key, "nanomlp" SUBSEP max_threads) in sg_gflops) && ((key, "openblas" SUBSEP max_threads) in sg_gflops) && sg_gflops[key, "openblas" SUBSEP max_threads] > 0)
      sp = sprintf("%.2f", sg_gflops[key, "nanomlp" SUBSEP max_threads] / sg_gflops[key, "openblas" SUBSEP max_threads])
    print "| " sg_case[key] " | " sg_op[key] ": " sg_prod[key] " | " sg_mnk[key] " | " \
      (((key, "nanomlp" SUBSEP 1) in sg_us) ? fmt_us(sg_us[key, "nanomlp" SUBSEP 1]) : "-") " | " \
      (((key, "nanomlp" SUBSEP 1) in sg_cpu) && sg_us[key, "nanomlp" SUBSEP 1] > 0 && sg_cpu[key, "nanomlp" SUBSEP 1] != "" ? pct(sg_cpu[key, "nanomlp" SUBSEP 1] / sg_us[key, "nanomlp" SUBSEP 1]) : "-") " | " \
      cell_gflops(key, "nanomlp", 1) " | " cell_gflops(key, "nanomlp", max_threads) " | " cell_gflops(key, "openblas", max_threads) " | " sp " |"
  }
  print ""

  if (n_kernel > 0 || n_step > 0) {
    steps = 938  # ceil(60000 / 64)
    print "## Where one default step goes (784-128-10, batch 64; µs per step)"
    print ""
    print "| Part | 1 thread | " tl " |"
    print "|---|---:|---:|"
    # On several threads the step is the split step (nanomlp/split_step.hpp), which has
    # no separate kernel calls to add up: only its whole step is measured.
    print "| 3 sgemm products of the output layer (the l2 b64 rows above) | " fmt_us(gemm_step_us[1]) " | - |"
    print "| the other kernels, 1 thread (sparse encode, forward and dW of the first layer, a bias add, ReLU forward and backward, softmax cross-entropy, a sum_rows, SGD update) | " fmt_us(elem_step_us) " | - |"
    print "| sum of the parts | " fmt_us(gemm_step_us[1] + elem_step_us) " | - |"
    print "| one whole step in isolation (bench_kernels step/; on " tl ": the split step, mean of 100 steps) | " ((1 in step_us) ? fmt_us(step_us[1]) : "-") " | " ((max_threads in step_us) ? fmt_us(step_us[max_threads]) : "-") " |"
    print "| one step in training (s / epoch ÷ " steps ") | " ((1 in default_epoch) ? fmt_us(default_epoch[1] / steps * 1e6) : "-") " | " ((max_threads in default_epoch) ? fmt_us(default_epoch[max_threads] / steps * 1e6) : "-") " |"
    print ""
    print "| Kernel (1 thread) | µs per call | GB/s | Calls per default step |"
    print "|---|---:|---:|---:|"
    for (i = 1; i <= n_kernel; ++i) {
      split(kernel_rec[i], f, "\t")
      print "| " f[2] " | " fmt_us(f[4]) " | " sprintf("%.1f", f[5]) " | " f[3] " |"
    }
    print ""
  }

  print "## Evaluation, data loading, memory"
  print ""
  print "| Measurement | Value |"
  print "|---|---|"
  for (i = 1; i <= n_eval; ++i) {
    split(eval_rec[i], f, "\t")
    print "| nanomlp::evaluate, " commas(get("data.test_images", 10000)) " test images, " f[2] " (trained), " f[3] " thread" (f[3] > 1 ? "s" : "") " | " \
      sprintf("%.1f ms", f[4] * 1e3) " (" commas(get("data.test_images", 10000) / f[4]) " images/s), median of " f[5] " |"
  }
  if (has("load.seconds"))
    print "| nanomlp::load_dataset(\"mnist\"): gunzip and check 4 IDX files, 70,000 images | " fmt_s(kv["load.seconds"]) " s, median of " get("load.runs", "?") " |"
  if (has("cli.maxrss_kib"))
    print "| Peak memory (max RSS) of `nanomlp train` with its defaults (784-128-10, batch 64, 10 epochs) | " sprintf("%.1f MiB", kv["cli.maxrss_kib"] / 1024) " |"
  else if (has("cli.error"))
    print "| Peak memory of `nanomlp train` | not measured: " kv["cli.error"] " |"
  if (has("cli.epoch_seconds"))
    print "| That `nanomlp train` run: median epoch / training / load / whole run (from --metrics-json) | " fmt_s(kv["cli.epoch_seconds"]) " s / " fmt_s(get("cli.train_seconds", 0)) " s / " fmt_s(get("cli.load_seconds", 0)) " s / " fmt_s(get("cli.total_seconds", 0)) " s; test accuracy " sprintf("%.2f%%", 100 * get("cli.test_accuracy", 0)) " |"
  print ""

  print "## Side by side: 784-128-10, batch 64, SGD lr 0.1, He init, pixels / 255, same MNIST files"
  print ""
  print "| Implementation | Threads | s / epoch | Samples / s | Test accuracy (after) | nanomlp is … faster |"
  print "|---|---:|---:|---:|---|---:|"
  if (nano_best != "")
    print "| nanomlp (bench_train) | " nano_best_t " (best of 1, " max_threads ") | " fmt_s(nano_best) " | " commas(60000 / nano_best) " | " \
      sprintf("%.2f%%", 100 * nano_acc) " (" plural(nano_epochs, "epoch") ") | 1.00× |"
  if (has("numpy.skipped")) {
    print "| NumPy (bench/numpy_mlp.py) | | | | skipped: " kv["numpy.skipped"] " | |"
  } else {
    np = best_python("numpy")
    if (np != "")
      print "| " get("numpy.version", "NumPy") " (bench/numpy_mlp.py) | " py_best_threads " (best of 1, " max_threads "; OpenBLAS) | " fmt_s(np) " | " commas(60000 / np) " | " \
        sprintf("%.2f%%", 100 * get("numpy.test_accuracy", 0)) " (" plural(get("numpy.epochs", "?"), "epoch") ") | " (nano_best != "" ? sprintf("%.1f×", np / nano_best) : "") " |"
    else
      print "| NumPy (bench/numpy_mlp.py) | | | | failed: " get("numpy.error", "no result") " | |"
  }
  if (has("torch.skipped")) {
    print "| PyTorch (bench/torch_mlp.py) | | | | skipped: " kv["torch.skipped"] " | |"
  } else if (has("torch.epoch_seconds")) {
    tp = kv["torch.epoch_seconds"]
    print "| " get("torch.version", "PyTorch") " (bench/torch_mlp.py) | " get("torch.threads", "?") " (best of " get("torch.thread_counts", "1, " max_threads) ") | " fmt_s(tp) " | " commas(60000 / tp) " | " \
      sprintf("%.2f%%", 100 * get("torch.test_accuracy", 0)) " (" plural(get("torch.epochs", "?"), "epoch") ") | " (nano_best != "" ? sprintf("%.1f×", tp / nano_best) : "") " |"
  } else {
    print "| PyTorch (bench/torch_mlp.py) | | | | failed: " get("torch.error", "no result") " | |"
  }
  print ""
  print "Seconds per epoch time the training passes only (no data loading, no evaluation), as nanomlp's EpochRecord.seconds does; each is the median over the epochs run."
}

# --- JSON --------------------------------------------------------------------------------------

function json(    i, f, t, sep) {
  print "{"
  printf "  \"reference_sgemm\": {\"case\": %s, \"min_dim\": %d, \"gflops_by_threads\": {", jstr(ref_case), ref_min_dim
  sep = ""
  for (t = 1; t <= max_threads; ++t) if (t in ref_gflops) { printf "%s\"%d\": %s", sep, t, ref_gflops[t]; sep = ", " }
  print "}},"
  print "  \"train\": ["
  for (i = 1; i <= n_train; ++i) {
    split(train_rec[i], f, "\t")
    printf "    {\"network\": %s, \"batch\": %d, \"threads\": %d, \"seconds_per_epoch\": %s, \"samples_per_second\": %s, \"gflop_per_epoch\": %s, \"gflops\": %.3f, \"percent_of_sgemm\": %s, \"speedup_vs_1_thread\": %s, \"passes\": %d, \"images_per_pass\": %d, \"test_accuracy\": %s, \"cpu_share\": %s}%s\n", \
      jstr(f[2]), f[3], f[4], f[5], f[6], f[7], tr_gflops[i], (tr_pct[i] >= 0 ? sprintf("%.2f", 100 * tr_pct[i]) : "null"), \
      (tr_speedup[i] > 0 ? sprintf("%.3f", tr_speedup[i]) : "null"), f[8], f[9], f[10], (f[11] != "" ? f[11] : "null"), (i < n_train ? "," : "")
  }
  print "  ],"
  print "  \"sgemm\": ["
  for (i = 1; i <= n_sgemm; ++i) {
    split(sgemm_rec[i], f, "\t")
    printf "    {\"case\": %s, \"op\": %s, \"impl\": %s, \"threads\": %d, \"M\": %d, \"N\": %d, \"K\": %d, \"product\": %s, \"gflops\": %s, \"microseconds\": %s, \"cpu_microseconds\": %s}%s\n", \
      jstr(f[2]), jstr(f[3]), jstr(f[4]), f[5], f[6], f[7], f[8], jstr(f[9]), f[10], f[11], (f[12] != "" ? f[12] : "null"), (i < n_sgemm ? "," : "")
  }
  print "  ],"
  print "  \"elementwise\": ["
  for (i = 1; i <= n_kernel; ++i) {
    split(kernel_rec[i], f, "\t")
    printf "    {\"kernel\": %s, \"calls_per_default_step\": %d, \"microseconds\": %s, \"gb_per_second\": %s}%s\n", \
      jstr(f[2]), f[3], f[4], f[5], (i < n_kernel ? "," : "")
  }
  print "  ],"
  print "  \"step\": ["
  for (i = 1; i <= n_step; ++i) {
    split(step_rec[i], f, "\t")
    printf "    {\"case\": %s, \"threads\": %d, \"microseconds\": %s}%s\n", jstr(f[2]), f[3], f[4], (i < n_step ? "," : "")
  }
  print "  ],"
  print "  \"eval\": ["
  for (i = 1; i <= n_eval; ++i) {
    split(eval_rec[i], f, "\t")
    printf "    {\"network\": %s, \"threads\": %d, \"seconds\": %s, \"runs\": %d}%s\n", jstr(f[2]), f[3], f[4], f[5], (i < n_eval ? "," : "")
  }
  print "  ],"
  print "  \"values\": {"
  for (i = 1; i <= n_kv; ++i) printf "    %s: %s%s\n", jstr(kv_order[i]), jval(kv[kv_order[i]]), (i < n_kv ? "," : "")
  print "  }"
  print "}"
}

END {
  derive()
  if (format == "json") json(); else markdown()
}
